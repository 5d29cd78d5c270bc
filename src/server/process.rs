//! What INFO reports about the process and the machine: resident memory, CPU time, the kernel,
//! physical memory. Read from the OS when asked; each reader returns 0 (or empty) where the OS
//! has no answer.

use std::sync::LazyLock;

/// Microseconds of CPU time, as `getrusage` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub user_us: u64,
    pub sys_us: u64,
}

impl CpuTime {
    /// Seconds as Redis prints them (`%ld.%06ld`).
    pub fn seconds_text(us: u64) -> String {
        format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
    }
}

fn timeval_us(tv: libc::timeval) -> u64 {
    (tv.tv_sec.max(0) as u64) * 1_000_000 + tv.tv_usec.max(0) as u64
}

/// CPU time of `who` (`RUSAGE_SELF`: every thread of the process; `RUSAGE_CHILDREN`: children
/// waited for, none here).
fn rusage(who: libc::c_int) -> CpuTime {
    // SAFETY: `usage` is a plain C struct that `getrusage` fills; all-zero is a valid value of
    // it, kept if the call fails.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`; `who` is one of the constants getrusage
    // takes.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return CpuTime::default();
    }
    CpuTime { user_us: timeval_us(usage.ru_utime), sys_us: timeval_us(usage.ru_stime) }
}

/// The process's CPU time (`used_cpu_user`, `used_cpu_sys`).
pub fn cpu_self() -> CpuTime {
    rusage(libc::RUSAGE_SELF)
}

/// Its children's (`used_cpu_user_children`, `used_cpu_sys_children`): the node forks none.
pub fn cpu_children() -> CpuTime {
    rusage(libc::RUSAGE_CHILDREN)
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Resident memory of the process in bytes (`used_memory_rss`): `/proc/self/statm`'s second
/// field, in pages. 0 where there is no `/proc`.
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages = statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok());
    pages.map_or(0, |p| p * page_size())
}

/// Physical memory of the machine in bytes (`total_system_memory`).
pub fn total_system_memory() -> u64 {
    // SAFETY: as `page_size`.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    u64::try_from(pages).map_or(0, |p| p * page_size())
}

/// The kernel as Redis's INFO `os:` shows it: `uname`'s system name, release and machine.
pub fn os_description() -> &'static str {
    static OS: LazyLock<String> = LazyLock::new(|| {
        // SAFETY: `utsname` is a plain C struct of byte arrays; all-zero is valid.
        let mut name: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `name` is a valid, writable `utsname`.
        if unsafe { libc::uname(&mut name) } != 0 {
            return std::env::consts::OS.to_string();
        }
        let field = |raw: &[libc::c_char]| {
            let bytes: Vec<u8> = raw.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        format!("{} {} {}", field(&name.sysname), field(&name.release), field(&name.machine))
    });
    &OS
}

/// Bytes as Redis's `bytesToHuman` prints them: `B` below 1 KiB, else two decimals and `K`, `M`,
/// `G`, `T` or `P`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 5] =
        [(1 << 10, "K"), (1 << 20, "M"), (1 << 30, "G"), (1 << 40, "T"), (1 << 50, "P")];
    if n < 1024 {
        return format!("{n}B");
    }
    for (i, (size, unit)) in UNITS.iter().enumerate() {
        let next = UNITS.get(i + 1).map_or(1 << 60, |(next, _)| *next);
        if n < next {
            return format!("{:.2}{unit}", n as f64 / *size as f64);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_prints_as_redis() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(916_264), "894.79K");
        assert_eq!(human_bytes(6_688_768), "6.38M");
        assert_eq!(human_bytes(25_276_182_528), "23.54G");
        assert_eq!(human_bytes(1 << 40), "1.00T");
        assert_eq!(human_bytes(1 << 60), "1152921504606846976B");
    }

    #[test]
    fn cpu_seconds_print_with_six_decimals() {
        assert_eq!(CpuTime::seconds_text(3_635), "0.003635");
        assert_eq!(CpuTime::seconds_text(12_000_001), "12.000001");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_has_resident_memory_and_cpu_time() {
        assert!(rss_bytes() > 0);
        assert!(total_system_memory() >= rss_bytes());
        let busy: u64 = (0..2_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        std::hint::black_box(busy);
        let cpu = cpu_self();
        assert!(cpu.user_us + cpu.sys_us > 0);
        assert!(os_description().starts_with("Linux "), "{}", os_description());
    }
}
