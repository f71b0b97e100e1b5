//! Handing the allocator's free memory back to the operating system. glibc keeps freed small
//! blocks in its heaps, so after a burst (a stuck subscriber's queue, hundreds of deleted
//! subscriptions' connections) the process's RSS would stay at its high-water mark.

/// Returns free memory to the system when the allocator holds more than `threshold` bytes free
/// beyond the `held` it had at the last look; answers what it holds free now, the `held` of the
/// next look. Blocks (it walks the allocator's arenas): run it off the async threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn release_beyond(held: usize, threshold: usize) -> usize {
    let free = free_bytes();
    if free <= held.saturating_add(threshold) {
        return free.min(held);
    }
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
    // Trimmed pages stay on the free lists (only their memory went back), so the free count
    // after the trim is the new baseline.
    free_bytes()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn release_beyond(held: usize, _threshold: usize) -> usize {
    held
}

/// Bytes in free chunks of all the allocator's arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn free_bytes() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2() }.fordblks
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("resident pages");
        pages * 4096
    }

    /// RSS is the whole process's, and other tests' notifiers trim the heap whenever their
    /// allocator gained enough: the measurement runs in a process of its own.
    #[test]
    fn freed_small_blocks_go_back_to_the_system() {
        const ALONE: &str = "MEP_MEMORY_TEST_ALONE";
        if std::env::var_os(ALONE).is_some() {
            return measure_release();
        }
        let name = "notify::memory::tests::freed_small_blocks_go_back_to_the_system";
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(ALONE, "1")
            .output()
            .expect("run the test in its own process");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn measure_release() {
        let blocks: Vec<Box<[u8]>> = (0..16 * 1024)
            .map(|i| vec![i as u8; 4000].into_boxed_slice())
            .collect();
        // Allocated last, it keeps the freed blocks below the top of the heap, where glibc
        // never trims them by itself.
        let sentinel = vec![1u8; 4000];
        let high = rss();
        drop(blocks);
        let kept = rss();
        assert!(
            kept + 16 * MIB > high,
            "glibc kept the blocks: {kept} of {high}"
        );
        let held = release_beyond(free_bytes(), 16 * MIB);
        assert!(
            rss() + 16 * MIB > kept,
            "below the threshold nothing is returned"
        );
        release_beyond(held.saturating_sub(48 * MIB), 16 * MIB);
        let after = rss();
        assert!(
            after + 32 * MIB < kept,
            "RSS {after} after the release, {kept} before"
        );
        drop(sentinel);
    }
}
