//! Pooled receive: reads that return a [`weir_bufpool::Buf`] from the runtime's buffer pool.
//!
//! On the ring, a stream's pooled reads are one multishot receive over a provided buffer ring
//! that the pool feeds: the kernel picks a buffer only when data arrives, so an idle connection
//! holds none. Each delivered buffer leaves the ring for good (it becomes the caller's `Buf`,
//! which returns to the pool on drop) and a fresh one from the pool takes its place. When the
//! pool runs dry the ring empties, the kernel ends the receive with `ENOBUFS` and the data stays
//! in the socket; the next read waits for a free buffer and re-arms — reads wait, never fail,
//! never lose bytes. On the reactor a read waits for readability first, then takes a buffer
//! (waiting fairly if the pool is empty) and reads into it.

use std::cell::OnceCell;
use std::io;

use weir_bufpool::{Config, Pool};

/// The runtime's pool, and on the ring its provided buffer ring.
pub(crate) struct Pooled {
    pub(crate) pool: Pool,
    #[cfg(target_os = "linux")]
    pub(crate) ring: Option<weir_ring::BufRing>,
}

/// The provided buffer ring's group id (one ring per runtime).
#[cfg(target_os = "linux")]
const GROUP: u16 = 0;

/// The default pool: 512 buffers of 16 KiB (8 MiB), allocated when the first pooled read runs.
pub(crate) fn default_config() -> Config {
    Config::new(16 * 1024, 512)
}

impl Pooled {
    /// The runtime's pooled state, created on first use.
    pub(crate) fn get<'a>(
        cell: &'a OnceCell<Pooled>,
        config: &Config,
        #[cfg(target_os = "linux")] ring: Option<&weir_ring::Ring>,
    ) -> io::Result<&'a Pooled> {
        if let Some(pooled) = cell.get() {
            return Ok(pooled);
        }
        let pool = config.clone().build().map_err(io::Error::from)?;
        let stats = pool.stats();
        if stats.capacity != stats.max_buffers {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the runtime's buffer pool must not grow (its buffers are registered up front)",
            ));
        }
        #[cfg(target_os = "linux")]
        let ring = match ring {
            Some(ring) => Some(register(ring, &pool)?),
            None => None,
        };
        let pooled = Pooled {
            pool,
            #[cfg(target_os = "linux")]
            ring,
        };
        Ok(cell.get_or_init(|| pooled))
    }

    /// Fills the provided ring with free pool buffers, up to its room.
    #[cfg(target_os = "linux")]
    pub(crate) fn top_up(&self) {
        let Some(ring) = &self.ring else { return };
        while let Some(buf) = self.pool.try_get() {
            let id = buf.into_raw();
            // SAFETY: `id` left the pool through `into_raw`: we own it until its CQE, and it is
            // not in the ring (ids in the ring are out of the pool).
            if unsafe { ring.provide(id) }.is_err() {
                // Full: take it back.
                // SAFETY: `id` came from `into_raw` just above and is rebuilt once.
                drop(unsafe { self.pool.from_raw(id, 0) });
                break;
            }
        }
    }
}

/// Registers the pool's buffers as the runtime's provided ring, half of them in it.
#[cfg(target_os = "linux")]
fn register(ring: &weir_ring::Ring, pool: &Pool) -> io::Result<weir_ring::BufRing> {
    let count = u16::try_from(pool.stats().capacity.min(1 << 15)).unwrap_or(1 << 15);
    let room = (count / 2).max(1);
    let group = weir_ring::BufRing::register_empty(ring, GROUP, PoolSource(pool.clone()), room)?;
    let pooled = Pooled {
        pool: pool.clone(),
        ring: Some(group.clone()),
    };
    pooled.top_up();
    Ok(group)
}

/// The pool as the kernel sees it.
#[cfg(target_os = "linux")]
struct PoolSource(Pool);

// SAFETY: the pool's buffers have fixed addresses for its lifetime, which this handle extends;
// every id below the count is allocated (the pool does not grow: checked in `Pooled::get`); and
// only ids taken out of the pool (`into_raw`) are ever put in the ring, so nothing else touches
// a buffer while the kernel may fill it.
#[cfg(target_os = "linux")]
unsafe impl weir_ring::BufferSource for PoolSource {
    fn buffer_count(&self) -> u16 {
        u16::try_from(self.0.stats().capacity.min(1 << 15)).unwrap_or(1 << 15)
    }

    fn buffer_len(&self) -> u32 {
        u32::try_from(self.0.buffer_size()).unwrap_or(u32::MAX)
    }

    fn buffer_ptr(&self, id: u16) -> std::ptr::NonNull<u8> {
        self.0
            .buffer_address(id)
            .unwrap_or(std::ptr::NonNull::dangling())
    }

    fn reclaim(&self, id: u16) {
        // SAFETY: an id still in the ring at unregistration left the pool through `into_raw`
        // and was never rebuilt; the kernel is done with it.
        drop(unsafe { self.0.from_raw(id, 0) });
    }
}
