//! The machine and the processes around the benchmark: loopback-only
//! targets, resident memory from /proc, file-descriptor limits.

use serde::Serialize;
use std::net::IpAddr;

/// Refuses any HTTP target that is not on this machine's loopback. Returns
/// the URL without a trailing slash.
pub fn loopback_http_url(url: &str) -> anyhow::Result<String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("not a URL: {url:?}: {e}"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "only http:// URLs are supported (got {url:?})"
    );
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("URL has no host: {url:?}"))?;
    anyhow::ensure!(
        is_loopback_host(host),
        "refusing to load {host}: qrlogin-bench targets loopback only (127.0.0.0/8, ::1, localhost)"
    );
    anyhow::ensure!(
        uri.path() == "/" || uri.path().is_empty(),
        "give the service's base URL without a path (got {url:?})"
    );
    Ok(url.trim_end_matches('/').to_string())
}

/// `localhost`, `127.x.y.z` or `::1` (brackets allowed).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Resident memory of a process, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Rss {
    /// `VmRSS`: resident now.
    pub rss_kb: u64,
    /// `VmHWM`: the peak since the process started.
    pub hwm_kb: u64,
}

pub fn rss_of(pid: u32) -> anyhow::Result<Rss> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| anyhow::anyhow!("cannot read /proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Ok(Rss {
        rss_kb: field("VmRSS:").ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?,
        hwm_kb: field("VmHWM:").unwrap_or(0),
    })
}

/// CPU time (user + system, all threads) a process has used so far, in
/// seconds, from `/proc/PID/stat` (clock ticks of USER_HZ = 100, fixed by
/// the Linux ABI on the platforms this runs on).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| anyhow::anyhow!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name is in parentheses and may contain spaces.
    let after = text
        .rsplit_once(')')
        .map(|(_, a)| a)
        .ok_or_else(|| anyhow::anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based).
    let tick = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
            .parse::<u64>()? as f64
            / 100.0)
    };
    Ok(tick(11)? + tick(12)?)
}

/// CPU seconds the whole machine has spent busy (all cores: user, nice,
/// system, irq, softirq, steal) since boot, from `/proc/stat`. The
/// difference over a run, minus the processes measured, is what other
/// work on the machine took.
pub fn machine_busy_seconds() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow::anyhow!("no cpu line in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    anyhow::ensure!(v.len() >= 8, "short cpu line in /proc/stat");
    // user nice system idle iowait irq softirq steal
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Ok(busy as f64 / 100.0)
}

/// Raises this process's open-file limit to its hard limit, so thousands of
/// connections fit. Returns the soft limit in force afterwards.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(0),
    }
}

/// What the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    /// UTC, RFC 3339.
    pub date: String,
}

pub fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(loopback_http_url("http://127.0.0.1:8080").is_ok());
        assert!(loopback_http_url("http://127.1.2.3:8080/").is_ok());
        assert!(loopback_http_url("http://localhost:1").is_ok());
        assert!(loopback_http_url("http://[::1]:8080").is_ok());
        assert!(loopback_http_url("http://10.0.0.1:8080").is_err());
        assert!(loopback_http_url("http://192.168.1.1").is_err());
        assert!(loopback_http_url("http://example.com").is_err());
        assert!(loopback_http_url("https://127.0.0.1:8080").is_err());
        assert!(loopback_http_url("http://127.0.0.1:8080/v1").is_err());
    }

    #[test]
    fn reads_own_cpu() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(std::process::id()).unwrap() > 0.0);
    }

    #[test]
    fn reads_own_rss() {
        let r = rss_of(std::process::id()).unwrap();
        assert!(r.rss_kb > 0 && r.hwm_kb >= r.rss_kb);
    }
}
