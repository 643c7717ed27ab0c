//! The runtime's buffer pool behind pooled reads, and the driver's view of it (on the ring, a
//! provided buffer ring the pool feeds; see `driver::PooledRecv`).

use std::cell::OnceCell;
use std::io;

use weir_bufpool::{Config, Pool};

use crate::driver::{Driver, Provided};

/// The runtime's pool and the driver's view of it.
pub(crate) struct Pooled {
    pub(crate) pool: Pool,
    pub(crate) provided: Provided,
}

/// The most buffers the runtime's pool may hold: an io_uring provided buffer ring holds at most
/// 32,768, and a buffer it cannot name would be handed out by the pool, refused by the ring and
/// handed back, over and over. The same limit on both backends, so a configuration that works on
/// one works on the other.
pub(crate) const MAX_POOLED_BUFFERS: usize = 1 << 15;

/// The default pool: 512 buffers of 16 KiB (8 MiB), allocated when the first pooled read runs.
pub(crate) fn default_config() -> Config {
    Config::new(16 * 1024, 512)
}

impl Pooled {
    /// The runtime's pooled state, created on first use.
    pub(crate) fn get<'a>(
        cell: &'a OnceCell<Pooled>,
        config: &Config,
        driver: &Driver,
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
        if stats.capacity > MAX_POOLED_BUFFERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the runtime's buffer pool holds at most {MAX_POOLED_BUFFERS} buffers (what an \
                     io_uring provided buffer ring can name), not {}",
                    stats.capacity
                ),
            ));
        }
        let provided = driver.provide(&pool)?;
        Ok(cell.get_or_init(|| Pooled { pool, provided }))
    }
}
