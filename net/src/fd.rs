//! The process's descriptor budget: `RLIMIT_NOFILE`, raised to the hard limit at start (the soft
//! limit is 1024 on many systems, far below what a server needs), and divided between the
//! listeners so that no one of them can use up the descriptors of the others.

use std::io;

/// `RLIMIT_NOFILE` after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before it was raised, if it was.
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (which an unprivileged process may do).
pub fn raise_to_hard() -> io::Result<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(FdLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
        raised_from: (limit.rlim_cur != before).then_some(before),
    })
}

/// Descriptors the process holds now (the entries of `/proc/self/fd`).
pub fn open_now() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// How many connections each listener may hold, and what is left for everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub mp1: usize,
    pub mm5: usize,
    pub dns_tcp: usize,
    /// Outgoing notification deliveries in flight at once.
    pub notify: usize,
    /// Descriptors kept for the rest: the store, DNS upstream sockets, the data plane, logs.
    pub reserve: usize,
}

/// What each listener would like to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub mp1: usize,
    pub mm5: usize,
    pub dns_tcp: usize,
    pub notify: usize,
}

/// Divides `soft - open` descriptors: an eighth (at least 64) stays in reserve; Mm5 is served
/// first, so the platform manager and `/health` keep answering whatever Mp1's clients do; then
/// DNS over TCP and notification deliveries, each capped at a quarter of what is left; Mp1 gets
/// the rest. Nobody gets more than it wants, and everybody gets at least one.
pub fn divide(soft: u64, open: usize, wanted: Wanted) -> Budget {
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    let free = soft.saturating_sub(open);
    let reserve = (free / 8).max(64).min(free);
    let mut left = free - reserve;
    // A part of what is left (`left / divisor`, at least `floor`), at most what is wanted.
    let take = |left: &mut usize, want: usize, divisor: usize, floor: usize| {
        let share = (*left / divisor).max(floor);
        let got = want.min(share).min(*left).max(1);
        *left = left.saturating_sub(got);
        got
    };
    let mm5 = take(&mut left, wanted.mm5, 16, 16);
    let dns_tcp = take(&mut left, wanted.dns_tcp, 4, 0);
    let notify = take(&mut left, wanted.notify, 4, 0);
    let mp1 = take(&mut left, wanted.mp1, 1, 0);
    Budget {
        mp1,
        mm5,
        dns_tcp,
        notify,
        reserve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: Wanted = Wanted {
        mp1: 4096,
        mm5: 128,
        dns_tcp: 1024,
        notify: 256,
    };

    #[test]
    fn a_generous_limit_gives_everyone_what_it_wants() {
        let b = divide(1 << 20, 40, WANTED);
        assert_eq!((b.mp1, b.mm5, b.dns_tcp, b.notify), (4096, 128, 1024, 256));
    }

    #[test]
    fn a_common_soft_limit_is_shared_and_mm5_keeps_its_part() {
        let b = divide(1024, 40, WANTED);
        assert_eq!(b.reserve, 123);
        assert!(b.mm5 >= 16, "{b:?}");
        let total = b.mp1 + b.mm5 + b.dns_tcp + b.notify + b.reserve + 40;
        assert!(total <= 1024, "{b:?} adds up to {total}");
        assert!(b.mp1 > b.dns_tcp, "{b:?}");
    }

    #[test]
    fn a_tiny_limit_still_serves() {
        let b = divide(80, 20, WANTED);
        assert!(
            b.mp1 >= 1 && b.mm5 >= 1 && b.dns_tcp >= 1 && b.notify >= 1,
            "{b:?}"
        );
    }

    #[test]
    fn the_soft_limit_can_be_raised() {
        let limit = raise_to_hard().unwrap();
        assert_eq!(limit.soft, limit.hard);
        assert!(open_now() > 2);
    }
}
