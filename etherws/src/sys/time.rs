//! The monotonic clock, as the kernel reads it (`bpf_ktime_get_ns` counts the same).

use std::time::Duration;

use super::{Result, check};

/// `clock_gettime(CLOCK_MONOTONIC)`: time since boot, suspend excluded.
///
/// # Errors
///
/// `clock_gettime(CLOCK_MONOTONIC)` with the OS error (which Linux never gives: the clock
/// always exists).
pub(crate) fn monotonic() -> Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec, the only memory clock_gettime writes.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    check(r, "clock_gettime(CLOCK_MONOTONIC)")?;
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_goes_forward() {
        let a = monotonic().unwrap();
        let b = monotonic().unwrap();
        assert!(b >= a && a > Duration::ZERO);
    }
}
