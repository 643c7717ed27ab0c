//! Name resolution without blocking the executor: addresses that are already addresses are
//! used at once; anything else is resolved by `ToSocketAddrs` on a short-lived thread while the
//! task waits.

use std::any::Any;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

/// The addresses `addr` stands for, in the resolver's order.
pub(crate) async fn resolve<A>(addr: A) -> io::Result<Vec<SocketAddr>>
where
    A: ToSocketAddrs + Send + 'static,
{
    if let Some(addr) = literal(&addr) {
        return Ok(vec![addr]);
    }
    let slot = Arc::new(Mutex::new(Slot::default()));
    let theirs = slot.clone();
    std::thread::Builder::new()
        .name("weir-resolve".into())
        .spawn(move || {
            let found = addr.to_socket_addrs().map(Iterator::collect);
            let mut slot = theirs.lock().unwrap_or_else(PoisonError::into_inner);
            slot.found = Some(found);
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        })?;
    poll_fn(|cx| {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.found.take() {
            Some(found) => Poll::Ready(found),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await
}

/// Where the resolving thread leaves its answer, and who to wake.
#[derive(Default)]
struct Slot {
    found: Option<io::Result<Vec<SocketAddr>>>,
    waker: Option<Waker>,
}

/// `addr` as a socket address if it needs no lookup: an address type, or a string or
/// `(string, port)` that parses as one.
fn literal(addr: &dyn Any) -> Option<SocketAddr> {
    if let Some(addr) = addr.downcast_ref::<SocketAddr>() {
        return Some(*addr);
    }
    if let Some(addr) = addr.downcast_ref::<SocketAddrV4>() {
        return Some((*addr).into());
    }
    if let Some(addr) = addr.downcast_ref::<SocketAddrV6>() {
        return Some((*addr).into());
    }
    if let Some((ip, port)) = addr.downcast_ref::<(IpAddr, u16)>() {
        return Some(SocketAddr::new(*ip, *port));
    }
    if let Some((ip, port)) = addr.downcast_ref::<(Ipv4Addr, u16)>() {
        return Some(SocketAddr::new((*ip).into(), *port));
    }
    if let Some((ip, port)) = addr.downcast_ref::<(Ipv6Addr, u16)>() {
        return Some(SocketAddr::new((*ip).into(), *port));
    }
    let text = addr
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| addr.downcast_ref::<String>().map(String::as_str))?;
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_address_strings_need_no_lookup() {
        let v4: SocketAddr = "127.0.0.1:80".parse().expect("addr");
        let v6: SocketAddr = "[::1]:443".parse().expect("addr");
        assert_eq!(literal(&v4), Some(v4));
        assert_eq!(literal(&"127.0.0.1:80"), Some(v4));
        assert_eq!(literal(&String::from("[::1]:443")), Some(v6));
        assert_eq!(literal(&(Ipv4Addr::LOCALHOST, 80_u16)), Some(v4));
        assert_eq!(literal(&"localhost:80"), None);
        assert_eq!(literal(&("localhost", 80)), None);
    }
}
