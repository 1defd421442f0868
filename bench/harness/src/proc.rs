//! What the kernel says about the server process: CPU time and resident memory.

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ; 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// utime + stime of `pid` (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// utime + stime of each of `pid`'s threads whose name starts with
/// `prefix` (the server names its media workers `media-0`, `media-1`, …),
/// by name, in seconds: shows which cores a meeting's forwarding used.
pub fn thread_cpu_seconds(
    pid: u32,
    prefix: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = entry?.path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let name = name.trim();
        if !name.starts_with(prefix) {
            continue;
        }
        let Ok(cpu) = stat_cpu_seconds(&dir.join("stat").to_string_lossy()) else {
            continue;
        };
        *out.entry(name.to_string()).or_default() += cpu;
    }
    Ok(out)
}

fn stat_cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // The command name may hold spaces; fields resume after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unreadable {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; the first after ')' is field 3.
    let utime: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    let stime: f64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    Ok((utime + stime) / CLK_TCK)
}

/// Resident set size of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kib: u64 = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return Ok(kib * 1024);
        }
    }
    Ok(0)
}
