//! Process metrics read from `/proc` at each scrape: resident memory, open file descriptors
//! and the process's start time. Where `/proc` cannot be read (not Linux) they are left out.

use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// The collector of the process metrics.
#[derive(Debug)]
pub(super) struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "shopfloor_process_resident_memory_bytes",
                "Resident memory of the server process, in bytes",
                resident_bytes(),
            ),
            (
                "shopfloor_process_open_fds",
                "File descriptors the server process has open",
                open_fds(),
            ),
            (
                "shopfloor_process_start_time_seconds",
                "When the server process started, in Unix seconds",
                start_time_s(),
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// `VmRSS` of `/proc/self/status` (in kB there).
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_rss_kb(&status).map(|kb| kb * 1024)
}

fn vm_rss_kb(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Entries of `/proc/self/fd` (the one open to list it included, as other clients count).
fn open_fds() -> Option<i64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count() as i64)
}

/// Boot time (`btime` of `/proc/stat`) plus the process's start in clock ticks since boot
/// (field 22 of `/proc/self/stat`). It never changes, so it is read once.
fn start_time_s() -> Option<i64> {
    static START: OnceLock<Option<i64>> = OnceLock::new();
    *START.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        Some(boot_time_s(&boot)? + start_ticks(&stat)? / CLOCK_TICKS_PER_S)
    })
}

/// `USER_HZ`: the unit of `/proc`'s clock ticks, 100 on every Linux architecture.
const CLOCK_TICKS_PER_S: i64 = 100;

fn boot_time_s(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Field 22; the command name (field 2, in parentheses) may itself hold spaces and parentheses.
fn start_ticks(self_stat: &str) -> Option<i64> {
    let after_name = &self_stat[self_stat.rfind(')')? + 1..];
    // Fields 3 onwards: starttime is the 20th of them.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(vm_rss_kb("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        assert_eq!(
            boot_time_s("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20";
        assert_eq!(start_ticks(stat), Some(987_654));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured() {
        assert!(resident_bytes().unwrap() > 0);
        assert!(open_fds().unwrap() >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let started = start_time_s().unwrap();
        assert!(started <= now && started > now - 86_400 * 365, "{started}");
    }
}
