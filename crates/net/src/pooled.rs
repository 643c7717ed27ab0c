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
        let provided = driver.provide(&pool)?;
        Ok(cell.get_or_init(|| Pooled { pool, provided }))
    }
}
