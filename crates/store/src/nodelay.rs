//! `TCP_NODELAY` on this process's database sockets. sqlx 0.9.0 stopped setting it (sqlx issue
//! 4335, fixed upstream, not yet released), so with Nagle's algorithm a request sent in two
//! writes waits for the server's delayed ACK: about 40 ms per group commit, a tenfold loss of
//! PostgreSQL throughput over TCP.
//!
//! Until sqlx sets it again, every new PostgreSQL connection calls [`apply`]: each TCP socket of
//! the process gets `TCP_NODELAY` through a duplicate of its descriptor (`pidfd_getfd`, safe
//! code; the duplicate shares the socket and is closed at once). Sockets that are not TCP refuse
//! the option, which is fine. Where the kernel or a sandbox refuses `pidfd_getfd`, nothing
//! changes but speed, and a warning says so once.

use std::sync::atomic::{AtomicBool, Ordering};

static WARNED: AtomicBool = AtomicBool::new(false);

/// Sets `TCP_NODELAY` on every TCP socket of the process; returns how many accepted it.
#[cfg(target_os = "linux")]
pub(crate) fn apply() -> usize {
    use rustix::net::sockopt::set_tcp_nodelay;
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    let pidfd = match pidfd_open(getpid(), PidfdFlags::empty()) {
        Ok(p) => p,
        Err(e) => {
            warn_once(&e.to_string());
            return 0;
        }
    };
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        warn_once("cannot list /proc/self/fd");
        return 0;
    };
    let mut set = 0;
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:["));
        if !is_socket {
            continue;
        }
        match pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) {
            Ok(dup) => set += usize::from(set_tcp_nodelay(&dup, true).is_ok()),
            Err(e) => {
                warn_once(&e.to_string());
                return set;
            }
        }
    }
    set
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn apply() -> usize {
    warn_once("not supported on this platform");
    0
}

fn warn_once(why: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            reason = why,
            "cannot set TCP_NODELAY on PostgreSQL connections; group commits may wait ~40 ms for delayed ACKs over TCP (use a Unix socket to avoid it)"
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn sets_nodelay_on_an_open_tcp_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        assert!(!client.nodelay().unwrap());
        assert!(super::apply() >= 2);
        assert!(
            client.nodelay().unwrap(),
            "the client socket now has TCP_NODELAY"
        );
    }
}
