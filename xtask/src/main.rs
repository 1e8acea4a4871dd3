//! Project automation for p2p-foundation.
//!
//! ```text
//! cargo xtask ci                          the whole check (the README's test command)
//! cargo xtask lab                         the NAT-lab tests (as root; CI=true, so none skips)
//! cargo xtask python                      the Python binding's checks and pytest suite
//! cargo xtask js                          the Node.js binding's checks and node --test suite
//! cargo xtask bench [SUITE ...] [--record]  benchmark suites -> target/bench-results/<suite>.json
//!                                         (`peers`, beside rust-libp2p and iroh, only when named)
//! cargo xtask record [SUITE ...]         append results already measured to docs/benchmarks.md
//! cargo xtask fuzz TARGET [--seconds N]   run one cargo-fuzz target
//! ```
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use p2p_foundation_benchkit::Report;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("ci") => ci(&args[1..]),
        Some("lab") => lab(),
        Some("python") => python(),
        Some("js") => js(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("record") => record(&args[1..]),
        _ => {
            eprintln!(
                "usage:\n  cargo xtask ci [--skip-slow-checks]\n  cargo xtask lab\n  \
                 cargo xtask python\n  \
                 cargo xtask js\n  \
                 cargo xtask bench [SUITE ...] [--record]\n  \
                 cargo xtask record [SUITE ...]\n  \
                 cargo xtask fuzz TARGET [--seconds N]\n\nsuites: {}",
                suites()
                    .map(|s| s.into_iter().map(|s| s.name).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            );
            Err("unknown command".into())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.pop();
    dir
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, echoing it, and fails with its description if it fails.
fn run(step: &str, mut cmd: Command) -> Result<()> {
    println!("\n==> {step}\n    $ {cmd:?}");
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: could not start: {e}"))?;
    println!("    ({step}: {:.1} s)", start.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `cargo xtask lab`: the NAT-lab tests (network namespaces and nftables NATs), with
/// `CI=true` so that none of them skips.
fn lab() -> Result<()> {
    if !is_root() {
        return Err(
            "the NAT lab needs root (it creates network namespaces and nftables \
                    NATs): run `sudo -E cargo xtask lab`"
                .into(),
        );
    }
    let runner: &[&str] = if has_nextest() {
        &["nextest", "run", "--no-fail-fast"]
    } else {
        &["test", "--no-fail-fast"]
    };
    let mut failures = Vec::new();
    for package in ["p2p-foundation-nat", "p2p-foundation"] {
        let mut cmd = cargo();
        cmd.args(runner)
            .args(["-p", package, "--test", "nat_lab"])
            .env("CI", "true");
        if let Err(e) = run(&format!("NAT lab ({package})"), cmd) {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn ci(args: &[String]) -> Result<()> {
    let start = Instant::now();
    let skip_slow = args.iter().any(|a| a == "--skip-slow-checks");
    let is_root = is_root();
    println!(
        "p2p-foundation CI: running as {}{}",
        if is_root {
            "root (lab and interop tests run)"
        } else {
            "a normal user (root-only tests skip)"
        },
        if std::env::var("CI").as_deref() == Ok("true") {
            ", CI=true (nothing may skip)"
        } else {
            ""
        }
    );

    // Every step runs even when an earlier one failed, so one failure does not hide others.
    let mut steps: Vec<(String, Command)> = Vec::new();
    let mut step = |name: &str, args: &[&str]| {
        let mut cmd = cargo();
        cmd.args(args);
        steps.push((name.to_owned(), cmd));
    };
    step("format", &["fmt", "--all", "--", "--check"]);
    step(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    );
    step(
        "build examples and benches",
        &["build", "--workspace", "--examples", "--benches"],
    );
    if has_nextest() {
        step(
            "tests (nextest)",
            &["nextest", "run", "--workspace", "--no-fail-fast"],
        );
    } else {
        step(
            "tests (cargo test)",
            &[
                "test",
                "--workspace",
                "--lib",
                "--bins",
                "--tests",
                "--examples",
                "--no-fail-fast",
            ],
        );
    }
    step("doctests", &["test", "--workspace", "--doc"]);
    // `--bench '*'` selects the bench targets only (`--benches` would rerun every unit test).
    step(
        "benchmark smoke runs",
        &["test", "--workspace", "--bench", "*"],
    );
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    steps.push(("docs".into(), doc));
    for fuzz in fuzz_crates()? {
        // The fuzz crates live outside the workspace (cargo-fuzz needs nightly to *run*
        // them); building their targets on stable keeps them from rotting.
        let shown = fuzz.strip_prefix(root()).unwrap_or(&fuzz).display();
        let name = format!("fuzz targets build ({shown})");
        let mut cmd = cargo();
        cmd.args(["build", "--bins", "--manifest-path"])
            .arg(fuzz.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", root().join("target/fuzz-build"));
        steps.push((name, cmd));
    }
    if !skip_slow {
        let mut package = cargo();
        package.args([
            "package",
            "--workspace",
            "--no-verify",
            "--allow-dirty",
            "--exclude",
            "xtask",
        ]);
        steps.push(("package (publishable crates)".into(), package));
    }

    let mut failures = Vec::new();
    match python_binding_steps() {
        Ok(more) => steps.extend(more),
        Err(e) => {
            println!("\n==> python binding\n    FAILED: {e}");
            failures.push(e);
        }
    }
    // After the workspace's tests, which built the `p2pf` binary its mixed test runs.
    match js_binding_steps(false) {
        Ok(more) => steps.extend(more),
        Err(e) => {
            println!("\n==> js binding\n    FAILED: {e}");
            failures.push(e);
        }
    }
    for (name, cmd) in steps {
        if let Err(e) = run(&name, cmd) {
            println!("    FAILED: {e}");
            failures.push(e);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if failures.is_empty() {
        println!("\nci: all checks passed in {elapsed:.0} s");
        Ok(())
    } else {
        println!("\nci: {} step(s) failed in {elapsed:.0} s:", failures.len());
        for failure in &failures {
            println!("  - {failure}");
        }
        Err(format!("{} CI step(s) failed", failures.len()))
    }
}

/// `cargo xtask python`: the Python binding's steps of `cargo xtask ci` alone.
fn python() -> Result<()> {
    let steps = python_binding_steps()?;
    if steps.is_empty() {
        return Err("the Python binding's venv is missing".into());
    }
    for (name, cmd) in steps {
        run(&name, cmd)?;
    }
    Ok(())
}

/// The Python binding (bindings/python, its own workspace): format, clippy, a rebuild into
/// the venv that `bindings/python/ci-setup.sh` made (a no-op when nothing changed), and its
/// pytest suite. Without that venv the binding is skipped with a note, or fails with
/// CI=true.
fn python_binding_steps() -> Result<Vec<(String, Command)>> {
    let dir = root().join("bindings/python");
    let venv = root().join("target/python-binding/venv");
    let python = venv.join("bin/python");
    if !python.is_file() {
        let why = format!(
            "{} is missing: run `bash bindings/python/ci-setup.sh` first",
            venv.display()
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            return Err(format!("python binding: {why}"));
        }
        println!("\n==> python binding: skipped ({why})");
        return Ok(Vec::new());
    }
    // The binding shares the workspace's target dir (its dependencies are the same crates).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let mut steps = Vec::new();
    let sources: Vec<PathBuf> = std::fs::read_dir(dir.join("src"))
        .map_err(|e| format!("bindings/python/src: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    let mut fmt = Command::new("rustfmt");
    fmt.args(["--check", "--edition", "2024"]).args(&sources);
    steps.push(("format (python binding)".to_owned(), fmt));
    let mut clippy = cargo();
    clippy
        .args(["clippy", "--all-targets", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .args(["--", "-D", "warnings"])
        // A target dir of its own: in the shared one, clippy's environment (not maturin's)
        // reruns PyO3's build script, and the next `maturin develop` rebuilds PyO3 and
        // relinks (171 s measured) instead of finding nothing to do.
        .env("CARGO_TARGET_DIR", target.join("python-binding-clippy"))
        .env("PYO3_PYTHON", &python);
    steps.push(("clippy (python binding)".to_owned(), clippy));
    let mut build = Command::new(venv.join("bin/maturin"));
    build
        .args(["develop", "--quiet"])
        .current_dir(&dir)
        .env("VIRTUAL_ENV", &venv)
        .env("CARGO_TARGET_DIR", &target);
    steps.push(("build (python binding, maturin develop)".to_owned(), build));
    let mut pytest = Command::new(&python);
    pytest
        .args(["-m", "pytest", "-p", "no:cacheprovider", "tests"])
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    steps.push(("tests (python binding, pytest)".to_owned(), pytest));
    Ok(steps)
}

/// `cargo xtask js`: the Node.js binding's steps of `cargo xtask ci` alone (building the
/// `p2pf` binary its mixed test runs first).
fn js() -> Result<()> {
    let steps = js_binding_steps(true)?;
    if steps.is_empty() {
        return Err("the Node.js binding is not set up".into());
    }
    for (name, cmd) in steps {
        run(&name, cmd)?;
    }
    Ok(())
}

/// The Node.js binding (bindings/js, its own workspace): format, clippy, a rebuild of the
/// addon (`npm run build`, a no-op when nothing changed) with a check that the generated
/// `index.js` and `index.d.ts` are the committed ones, and its `node --test` suite, whose
/// mixed test runs the Python binding's venv and the `p2pf` binary. Without the
/// `node_modules` that `bindings/js/ci-setup.sh` installs the binding is skipped with a
/// note, or fails with CI=true.
fn js_binding_steps(build_p2pf: bool) -> Result<Vec<(String, Command)>> {
    let dir = root().join("bindings/js");
    if !dir.join("node_modules/@napi-rs/cli").is_dir() {
        let why = format!(
            "{} is missing: run `bash bindings/js/ci-setup.sh` first",
            dir.join("node_modules").display()
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            return Err(format!("js binding: {why}"));
        }
        println!("\n==> js binding: skipped ({why})");
        return Ok(Vec::new());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let mut steps = Vec::new();
    let sources: Vec<PathBuf> = std::fs::read_dir(dir.join("src"))
        .map_err(|e| format!("bindings/js/src: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .chain([dir.join("build.rs")])
        .collect();
    let mut fmt = Command::new("rustfmt");
    fmt.args(["--check", "--edition", "2024"]).args(&sources);
    steps.push(("format (js binding)".to_owned(), fmt));
    let mut clippy = cargo();
    clippy
        .args(["clippy", "--all-targets", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .args(["--", "-D", "warnings"])
        .env("CARGO_TARGET_DIR", target.join("js-binding-clippy"));
    steps.push(("clippy (js binding)".to_owned(), clippy));
    let mut build = Command::new("npm");
    build
        .args(["run", "--silent", "build"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target);
    p2p_foundation_benchkit::with_js_node(&mut build, &root());
    steps.push(("build (js binding, npm run build)".to_owned(), build));
    let mut generated = Command::new("git");
    generated
        .args(["diff", "--exit-code", "--", "index.js", "index.d.ts"])
        .current_dir(&dir);
    steps.push((
        "generated index.js and index.d.ts are committed (js binding)".to_owned(),
        generated,
    ));
    if build_p2pf {
        let mut p2pf = cargo();
        p2pf.args(["build", "-p", "p2p-foundation-cli", "--bin", "p2pf"]);
        steps.push((
            "build p2pf (for the js binding's mixed test)".to_owned(),
            p2pf,
        ));
    }
    let mut tests: Vec<PathBuf> = std::fs::read_dir(dir.join("tests"))
        .map_err(|e| format!("bindings/js/tests: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.js"))
        .collect();
    tests.sort();
    let mut node = Command::new("node");
    p2p_foundation_benchkit::with_js_node(&mut node, &root());
    node.arg("--test")
        .args(&tests)
        .current_dir(&dir)
        .env("P2PF_BIN", target.join("debug/p2pf"))
        .env(
            "P2PF_PYTHON",
            root().join("target/python-binding/venv/bin/python"),
        );
    steps.push(("tests (js binding, node --test)".to_owned(), node));
    Ok(steps)
}

/// The cargo-fuzz crates (`crates/*/fuzz/Cargo.toml`), sorted.
fn fuzz_crates() -> Result<Vec<PathBuf>> {
    let crates = root().join("crates");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&crates)
        .map_err(|e| format!("{}: {e}", crates.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("fuzz")))
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// A benchmark suite: `crates/<dir>/benches/<name>.rs` in package `package`, or
/// `benches/<dir>/benches/<name>.rs` in a crate of its own outside the workspace.
struct Suite {
    name: String,
    package: String,
    /// For a crate outside the workspace: its manifest (it has its own lock file and its own
    /// target directory, [`external_target_dir`]). `None` for a workspace member.
    manifest: Option<PathBuf>,
}

impl Suite {
    /// `cargo <args...>` building or running this suite's bench target.
    fn cargo(&self, args: &[&str]) -> Command {
        let mut cmd = cargo();
        cmd.args(args);
        match &self.manifest {
            Some(manifest) => {
                cmd.arg("--manifest-path")
                    .arg(manifest)
                    .env("CARGO_TARGET_DIR", external_target_dir());
                // `cargo xtask` runs us with xtask's own package variables set
                // (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...); ring's build script reruns when
                // they change, and with it half the peers' dependency tree: give the crate
                // the environment a plain `cargo bench` in a shell gives it.
                for (key, _) in std::env::vars_os() {
                    let k = key.to_string_lossy();
                    let set_by_cargo_run = k.starts_with("CARGO_PKG_")
                        || k.starts_with("CARGO_MANIFEST_")
                        || [
                            "CARGO_CRATE_NAME",
                            "CARGO_BIN_NAME",
                            "CARGO_PRIMARY_PACKAGE",
                        ]
                        .contains(&&*k);
                    if set_by_cargo_run {
                        cmd.env_remove(&key);
                    }
                }
            }
            None => {
                cmd.args(["-p", &self.package]);
            }
        }
        cmd.args(["--bench", &self.name]);
        cmd
    }
}

/// Where the crates outside the workspace (`benches/<dir>`) build: `$P2PF_PEERS_TARGET_DIR`,
/// else `target/peers`. Never the workspace's own target directory: their dependencies
/// (rust-libp2p, iroh) share nothing with it, and `cargo xtask ci` never builds them.
fn external_target_dir() -> PathBuf {
    std::env::var_os("P2PF_PEERS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join("peers"))
}

/// The `<name>` of every `<dir>/benches/<name>.rs`, sorted.
fn bench_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("benches")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".rs")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// The subdirectories of `dir`, sorted.
fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

fn suites() -> Result<Vec<Suite>> {
    let members = sorted_dirs(&root().join("crates"))?;
    // Crates outside the workspace with a lock file of their own, `benches/<dir>/Cargo.toml`
    // (the side-by-side comparison with rust-libp2p and iroh): after the members.
    let external = sorted_dirs(&root().join("benches")).unwrap_or_default();
    let mut out = Vec::new();
    let dirs = members.iter().map(|d| (d, false));
    for (dir, outside) in dirs.chain(external.iter().map(|d| (d, true))) {
        let Some(package) = package_name(dir) else {
            continue;
        };
        let manifest = outside.then(|| dir.join("Cargo.toml"));
        for name in bench_names(dir) {
            out.push(Suite {
                name,
                package: package.clone(),
                manifest: manifest.clone(),
            });
        }
    }
    Ok(out)
}

fn package_name(dir: &Path) -> Option<String> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let package = manifest.split("[package]").nth(1)?;
    let line = package
        .lines()
        .find(|l| l.trim_start().starts_with("name"))?;
    Some(line.split('"').nth(1)?.to_owned())
}

fn bench(args: &[String]) -> Result<()> {
    let record = args.iter().any(|a| a == "--record");
    let wanted: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let all = suites()?;
    let chosen: Vec<&Suite> = if wanted.is_empty() {
        // The crates outside the workspace build rust-libp2p and iroh (many minutes on two
        // cores): run only when named, `cargo xtask bench peers`.
        all.iter().filter(|s| s.manifest.is_none()).collect()
    } else {
        let mut chosen = Vec::new();
        for w in &wanted {
            let suite = all.iter().find(|s| &&s.name == w).ok_or_else(|| {
                let names: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
                format!("no benchmark suite {w:?}; suites: {}", names.join(", "))
            })?;
            chosen.push(suite);
        }
        chosen
    };
    let results = root().join("target").join("bench-results");
    let mut reports = Vec::new();
    for suite in chosen {
        if record {
            // Compiling loads the cores for minutes: build first, then let the load settle
            // so the suite starts on an idle machine and its figures may be recorded.
            let build = suite.cargo(&["bench", "--no-run"]);
            run(&format!("build bench {}", suite.name), build)?;
            p2p_foundation_benchkit::wait_for_idle(Duration::from_secs(300))?;
        }
        let mut cmd = suite.cargo(&["bench"]);
        cmd.env("P2PF_BENCH_DIR", &results);
        run(&format!("bench {}", suite.name), cmd)?;
        let path = results.join(format!("{}.json", suite.name));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let report: Report =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        reports.push(report);
    }
    for report in &reports {
        println!(
            "\n## {} ({})\n\n{}",
            report.suite,
            report.machine,
            report.to_markdown()
        );
    }
    if record {
        record_reports(&reports)?;
    }
    Ok(())
}

/// `cargo xtask record [SUITE ...]`: appends results already in `target/bench-results` (from an
/// earlier `cargo xtask bench`) to docs/benchmarks.md without running anything again.
fn record(args: &[String]) -> Result<()> {
    let results = root().join("target").join("bench-results");
    let mut names: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .collect();
    if names.is_empty() {
        names = suites()?.into_iter().map(|s| s.name).collect();
        names.retain(|n| results.join(format!("{n}.json")).exists());
    }
    let mut reports = Vec::new();
    for name in names {
        let path = results.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (run `cargo xtask bench {name}` first)",
                path.display()
            )
        })?;
        let report: Report =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        reports.push(report);
    }
    record_reports(&reports)
}

fn record_reports(reports: &[Report]) -> Result<()> {
    let refused: Vec<String> = reports.iter().filter_map(Report::unrecordable).collect();
    if !refused.is_empty() {
        return Err(format!(
            "nothing recorded in docs/benchmarks.md:\n  {}",
            refused.join("\n  ")
        ));
    }
    let path = root().join("docs").join("benchmarks.md");
    let mut doc = std::fs::read_to_string(&path).unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    for report in reports {
        doc.push_str(&format!(
            "\n### `{}` — {date}, {}\n\n{}",
            report.suite,
            report.machine,
            report.to_markdown()
        ));
    }
    std::fs::write(&path, doc).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("recorded {} suite(s) in {}", reports.len(), path.display());
    Ok(())
}

fn fuzz(args: &[String]) -> Result<()> {
    let target = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .ok_or("usage: cargo xtask fuzz TARGET [--seconds N]")?;
    let seconds = match args.iter().position(|a| a == "--seconds") {
        Some(i) => args
            .get(i + 1)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("--seconds takes a whole number")?,
        None => 60,
    };
    let crates = root().join("crates");
    let mut found = None;
    let mut known = Vec::new();
    for entry in std::fs::read_dir(&crates)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let targets = entry.path().join("fuzz").join("fuzz_targets");
        for t in std::fs::read_dir(&targets).into_iter().flatten().flatten() {
            if let Some(name) = t.file_name().to_str().and_then(|n| n.strip_suffix(".rs")) {
                if name == target {
                    found = Some(entry.path().join("fuzz"));
                }
                known.push(name.to_owned());
            }
        }
    }
    known.sort();
    let fuzz_dir =
        found.ok_or_else(|| format!("no fuzz target {target:?}; targets: {}", known.join(", ")))?;
    let installed = cargo()
        .args(["fuzz", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        run("install cargo-fuzz", install)?;
    }
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&fuzz_dir).args([
        "+nightly",
        "fuzz",
        "run",
        target,
        "--",
        &format!("-max_total_time={seconds}"),
    ]);
    run(&format!("fuzz {target} for {seconds} s"), cmd)
}
