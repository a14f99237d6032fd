//! The standard `process_*` metrics, as Prometheus's Go and Python clients name them:
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_start_time_seconds`, `process_open_fds`,
//! `process_max_fds`, `process_threads`. Read from `/proc/self` at each scrape (Linux only;
//! on other systems, and for any value that cannot be read, the metric is left out).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The process collector.
#[derive(Debug, Clone, Copy)]
pub struct Process;

/// What `/proc/self/stat` says, in the units the metrics use.
#[derive(Debug, Default, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    threads: i64,
    start_time_seconds: f64,
    virtual_bytes: i64,
    resident_bytes: i64,
}

/// Parses `/proc/self/stat` (fields after the parenthesised command name, which may hold
/// spaces), given the clock ticks per second, the page size and the boot time.
fn parse_stat(text: &str, ticks: f64, page: i64, boot_time: f64) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    Some(Stat {
        cpu_seconds: (num(14)? + num(15)?) / ticks,
        threads: num(20)? as i64,
        start_time_seconds: boot_time + num(22)? / ticks,
        virtual_bytes: num(23)? as i64,
        resident_bytes: num(24)? as i64 * page,
    })
}

#[cfg(target_os = "linux")]
fn read() -> (Option<Stat>, Option<i64>, Option<i64>) {
    // SAFETY: sysconf and getrlimit only read process-wide values into the given memory.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let stat = match (std::fs::read_to_string("/proc/self/stat"), boot_time) {
        (Ok(text), Some(boot)) if ticks > 0 && page > 0 => {
            parse_stat(&text, ticks as f64, page, boot)
        }
        _ => None,
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as i64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    let max_fds = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then(|| i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX));
    (stat, open_fds, max_fds)
}

#[cfg(not(target_os = "linux"))]
fn read() -> (Option<Stat>, Option<i64>, Option<i64>) {
    (None, None, None)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue + Copy + std::fmt::Debug>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<V>: EncodeMetric,
{
    let g = ConstGauge::new(v);
    let m = e.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

impl Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (stat, open_fds, max_fds) = read();
        if let Some(s) = stat {
            let c = ConstCounter::new(s.cpu_seconds);
            let m = e.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            )?;
            gauge(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            )?;
            gauge(
                &mut e,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            )?;
            gauge(
                &mut e,
                "process_threads",
                "Number of OS threads in the process",
                s.threads,
            )?;
        }
        if let Some(n) = open_fds {
            gauge(
                &mut e,
                "process_open_fds",
                "Number of open file descriptors",
                n,
            )?;
        }
        if let Some(n) = max_fds {
            gauge(
                &mut e,
                "process_max_fds",
                "Maximum number of open file descriptors",
                n,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_the_command_name() {
        // pid (comm with ) and spaces) state ppid ... : utime=14 stime=15 threads=20
        // starttime=22 vsize=23 rss=24.
        let line = "42 (a ) b) S 1 1 1 0 -1 0 0 0 0 0 250 150 0 0 20 0 7 0 1000 4096000 300 0";
        let s = parse_stat(line, 100.0, 4096, 1_700_000_000.0).unwrap();
        assert_eq!(
            s,
            Stat {
                cpu_seconds: 4.0,
                threads: 7,
                start_time_seconds: 1_700_000_010.0,
                virtual_bytes: 4_096_000,
                resident_bytes: 300 * 4096,
            }
        );
    }
}
