//! `cargo xtask`: the project's whole set-up and test entry points.
//!
//! - `build`: the plugins and fixtures for wasm32-wasip2, the host, the emulators.
//! - `test`: build, install what the tests need, run every test.
//! - `demo`: build what the demo runs, start the emulator and the host,
//!   install the plugin, seed the story (`--headless`: drive and check it).
//! - `bench`: the benchmarks, printing ratios measured side by side.
//! - `fuzz`: the plugin's fuzz targets, for a given time or number of runs.
//! - `new-plugin NAME`: a plugin crate to start from, in `plugins/NAME/`.

mod demo;
mod fuzz;
mod new_plugin;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Components built for wasm32-wasip2: the products and the test fixtures.
const WASM_PACKAGES: &[&str] = &[
    "salesforce-plugin",
    "hubspot-plugin",
    "fixture-probe",
    "fixture-probe-v2",
    "fixture-future-api",
];
/// Built on its own: it links the plugin without its `component` feature,
/// which a shared `cargo build` would unify back on.
const WASM_SEPARATE: &[&str] = &["fixture-assoc-bench"];
const WASM_TARGET: &str = "wasm32-wasip2";

/// A plugin the project ships: built for wasm32-wasip2 (release),
/// pre-initialized when it exports `wizer-initialize` (the SDK world
/// does), checked for size and reproducibility, and written to
/// `target/plugins/{file}`.
#[derive(Clone, Copy, Debug)]
struct Shipped {
    /// Its cargo package.
    package: &'static str,
    /// Its file name, cargo's (`-` becomes `_`).
    file: &'static str,
}

const SALESFORCE: Shipped = Shipped {
    package: "salesforce-plugin",
    file: "salesforce_plugin.wasm",
};
const HUBSPOT: Shipped = Shipped {
    package: "hubspot-plugin",
    file: "hubspot_plugin.wasm",
};
/// The products among the wasm packages, in the order the demo installs them.
const SHIPPED: &[Shipped] = &[SALESFORCE, HUBSPOT];

impl Shipped {
    /// As cargo builds it.
    fn built(self) -> PathBuf {
        target_dir()
            .join(WASM_TARGET)
            .join("release")
            .join(self.file)
    }

    /// As shipped: pre-initialized (or the built bytes, for a plugin
    /// without `wizer-initialize`).
    fn path(self) -> PathBuf {
        target_dir().join("plugins").join(self.file)
    }
}

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the plugin (release, wasm32-wasip2), the fixtures, the host and the emulator.
    Build,
    /// Build, install test dependencies, and run every test.
    Test,
    /// Build and run the product: emulator + host + plugin.
    Demo {
        /// Drive the administrator's set-up over HTTP, print each step,
        /// check the story (automatic association matches all extensions
        /// but the manual one), stop everything and exit.
        #[arg(long)]
        headless: bool,
    },
    /// Run the benchmarks.
    Bench,
    /// cargo fmt --check and clippy -D warnings.
    Lint,
    /// Generate a plugin crate to start from in plugins/NAME (id NAME,
    /// crate NAME-plugin) and add it to the workspace.
    NewPlugin {
        /// The plugin's id: a-z, 0-9 and '-', starting with a letter.
        name: String,
    },
    /// Check every shipped plugin (built first by `build`): within its
    /// size budget, and pre-initializing it again gives the same bytes
    /// (part of `test`).
    CheckShipped,
    /// Generate a skeleton into a scratch workspace, run its tests, build
    /// it for wasm32-wasip2 and install it on a host (part of `test`; the
    /// host is built first).
    CheckNewPlugin,
    /// Run the plugin's fuzz targets (not part of `test`).
    Fuzz {
        /// Seconds per target (60 when neither limit is given).
        #[arg(long)]
        seconds: Option<u64>,
        /// Runs (inputs executed) per target; with --seconds, the first
        /// limit reached ends the target.
        #[arg(long)]
        runs: Option<u64>,
        /// Only this target (caller_number, oauth_callback, salesforce_json).
        #[arg(long)]
        target: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Build => build(),
        Task::Test => test(),
        Task::Demo { headless } => build_demo().and_then(|()| demo::run(headless)),
        Task::Bench => bench(),
        Task::Lint => lint(),
        Task::NewPlugin { name } => new_plugin::new_plugin(&name),
        Task::CheckNewPlugin => new_plugin::check_skeleton(),
        Task::CheckShipped => check_shipped_plugins(),
        Task::Fuzz {
            seconds,
            runs,
            target,
        } => fuzz::fuzz(
            &root(),
            fuzz::Budget {
                seconds: seconds.or(runs.is_none().then_some(60)),
                runs,
            },
            target.as_deref(),
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// `cargo` for the wasm builds, with the machine's paths taken out of what
/// it compiles: panic messages carry the source paths of the registry
/// crates (`$CARGO_HOME/registry/src/...`), so without this the shipped
/// plugin's bytes, and its published SHA-256, would depend on where the
/// vendor's cargo home and checkout are. Only the wasm target's flags are
/// set (`CARGO_TARGET_<TRIPLE>_RUSTFLAGS`); a `RUSTFLAGS` of the caller's
/// own takes precedence over them.
fn wasm_cargo() -> Command {
    let mut cmd = cargo();
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    // The last remapping that matches wins: the target directory may be
    // inside the checkout.
    let mut remaps = Vec::new();
    if let Some(home) = home {
        remaps.push((home, "/cargo"));
    }
    remaps.push((root(), "/build"));
    remaps.push((target_dir(), "/target"));
    // The variable is split at white space: a path with some stays as it
    // is (and in the plugin).
    let flags: Vec<String> = remaps
        .iter()
        .filter(|(from, _)| !from.to_string_lossy().contains(char::is_whitespace))
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect();
    let var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        WASM_TARGET.to_uppercase().replace('-', "_")
    );
    cmd.env(var, flags.join(" "));
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the wasm32-wasip2 target")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

fn build() -> anyhow::Result<()> {
    let started = Instant::now();
    ensure_wasm_target()?;
    // The separate ones first: building the plugin as their dependency
    // leaves a plugin without its component glue where the product's goes,
    // and the product's build below puts it back.
    for package in WASM_SEPARATE {
        run(wasm_cargo().args(["build", "--release", "--target", WASM_TARGET, "-p", package]))?;
    }
    build_product(WASM_PACKAGES)?;
    report_built(started);
    Ok(())
}

/// Only what the demo runs: the shipped plugins, the host, the emulators.
fn build_demo() -> anyhow::Result<()> {
    let started = Instant::now();
    ensure_wasm_target()?;
    let packages: Vec<&str> = SHIPPED.iter().map(|s| s.package).collect();
    build_product(&packages)?;
    report_built(started);
    Ok(())
}

/// `wasm_packages` (with the shipped plugins), the binaries, and the
/// shipped plugins.
fn build_product(wasm_packages: &[&str]) -> anyhow::Result<()> {
    let mut wasm = wasm_cargo();
    wasm.args(["build", "--release", "--target", WASM_TARGET]);
    for package in wasm_packages {
        wasm.args(["-p", package]);
    }
    run(&mut wasm)?;
    let mut built = Vec::new();
    for shipped in SHIPPED {
        let path = shipped.built();
        let bytes = std::fs::read(&path)
            .with_context(|| format!("{} was not built ({})", shipped.package, path.display()))?;
        if !contains(&bytes, b"pbx-crm-manifest") {
            bail!(
                "{} lacks its manifest: the plugin was built without its `component` feature",
                path.display()
            );
        }
        built.push((*shipped, bytes));
    }
    run(cargo().args([
        "build",
        "-p",
        "pbx-host",
        "-p",
        "salesforce-emulator",
        "-p",
        "hubspot-emulator",
        "-p",
        "plugin-preinit",
        "--bins",
    ]))?;
    for (shipped, bytes) in &built {
        ship(*shipped, bytes)?;
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether a built component has the pre-initialization entry point: its
/// name, `wizer-initialize`, is in the component (the SDK world's export
/// names it). A component that only mentions the name elsewhere makes
/// `plugin-preinit` fail naming the missing export, not ship unchecked.
fn exports_wizer_initialize(built: &[u8]) -> bool {
    contains(built, b"wizer-initialize")
}

fn report_built(started: Instant) {
    let sizes: Vec<String> = SHIPPED
        .iter()
        .map(|shipped| {
            let path = shipped.path();
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            format!("{} ({} KiB)", path.display(), size / 1024)
        })
        .collect();
    eprintln!(
        "xtask: built in {:.0} s; plugins {}",
        started.elapsed().as_secs_f64(),
        sizes.join(", ")
    );
}

/// A shipped plugin as built: pre-initialized when it exports
/// `wizer-initialize`, copied as it is otherwise.
fn ship(shipped: Shipped, built: &[u8]) -> anyhow::Result<()> {
    let out = shipped.path();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if exports_wizer_initialize(built) {
        preinitialize(built, &shipped.built(), &out)
    } else {
        eprintln!(
            "xtask: {} exports no wizer-initialize; shipped as built",
            shipped.package
        );
        std::fs::write(&out, built).with_context(|| format!("cannot write {}", out.display()))
    }
}

/// The vendor's last build step: snapshot the plugin after its
/// `wizer-initialize` export ran (tools/plugin-preinit), so no per-call
/// instance pays for its warm-up. Skipped when its inputs (the built
/// plugin's bytes, the tool's binary) are those of the last run, recorded
/// beside the snapshot: cargo may rewrite an unchanged plugin (the
/// separate fixtures do), so times alone would run it again.
fn preinitialize(built: &[u8], built_path: &Path, shipped: &Path) -> anyhow::Result<()> {
    let tool = bin("plugin-preinit");
    let stamp = shipped.with_extension("wasm.inputs");
    let inputs = preinit_inputs(built, &tool)?;
    if shipped.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&inputs) {
        eprintln!("xtask: the pre-initialized plugin is up to date");
        return Ok(());
    }
    let _ = std::fs::remove_file(&stamp);
    run(Command::new(&tool).arg(built_path).arg(shipped))?;
    std::fs::write(&stamp, inputs)?;
    Ok(())
}

/// The most a shipped plugin may weigh (bytes): vendors publish it, hosts
/// download, store and map it.
const PLUGIN_SIZE_BUDGET: u64 = 4_000_000;

/// Every shipped plugin is within its size budget, and pre-initializing
/// the built plugin again gives the same bytes (a vendor's published
/// SHA-256 can be reproduced; the tool itself also compares two runs in
/// one process).
fn check_shipped_plugins() -> anyhow::Result<()> {
    for shipped in SHIPPED {
        check_shipped_plugin(*shipped)?;
    }
    Ok(())
}

fn check_shipped_plugin(plugin: Shipped) -> anyhow::Result<()> {
    let shipped = plugin.path();
    let bytes =
        std::fs::read(&shipped).with_context(|| format!("cannot read {}", shipped.display()))?;
    let size = bytes.len() as u64;
    if size > PLUGIN_SIZE_BUDGET {
        bail!(
            "{} is {size} bytes, over its budget of {PLUGIN_SIZE_BUDGET} bytes (4 MB): \
             keep what the pre-initialization leaves in memory small (docs/PERFORMANCE.md)",
            shipped.display()
        );
    }
    let built = plugin.built();
    let built_bytes =
        std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
    let second = if exports_wizer_initialize(&built_bytes) {
        let again = shipped.with_extension("wasm.again");
        run(Command::new(bin("plugin-preinit")).arg(&built).arg(&again))?;
        let second =
            std::fs::read(&again).with_context(|| format!("cannot read {}", again.display()))?;
        let _ = std::fs::remove_file(&again);
        second
    } else {
        built_bytes
    };
    if second != bytes {
        bail!(
            "pre-initializing {} again gave other bytes than {} ({} and {size} bytes): \
             the shipped plugin is not reproducible",
            built.display(),
            shipped.display(),
            second.len()
        );
    }
    eprintln!(
        "xtask: {} is {size} bytes (budget {PLUGIN_SIZE_BUDGET}) and reproducible",
        shipped.display()
    );
    Ok(())
}

/// What the snapshot depends on, as one line.
fn preinit_inputs(built: &[u8], tool: &Path) -> anyhow::Result<String> {
    use std::hash::{Hash, Hasher};
    let mut plugin = std::collections::hash_map::DefaultHasher::new();
    built.hash(&mut plugin);
    let meta =
        std::fs::metadata(tool).with_context(|| format!("{} was not built", tool.display()))?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    Ok(format!(
        "plugin {} bytes hash {:016x}; tool {} bytes modified {modified}\n",
        built.len(),
        plugin.finish(),
        meta.len()
    ))
}

/// The Salesforce plugin as shipped: pre-initialized.
fn plugin_path() -> PathBuf {
    SALESFORCE.path()
}

/// The HubSpot plugin as shipped: pre-initialized.
fn hubspot_plugin_path() -> PathBuf {
    HUBSPOT.path()
}

fn bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// Debian packages the tests need: Chromium and its WebDriver for the portal
/// tests, Redis for the shared store's tests (each test starts its own
/// server on a free loopback port). Installed only when missing, without
/// prompting.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
    ("redis-server", "/usr/bin/redis-server"),
    ("redis-tools", "/usr/bin/redis-cli"),
];

fn install_debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, binary)| !Path::new(binary).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sudo = |program: &str| {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut cmd = if root {
            Command::new(program)
        } else {
            let mut c = Command::new("sudo");
            c.arg(program);
            c
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(sudo("apt-get").args(["update", "-qq"]))?;
    run(sudo("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

/// What the tests need beyond Rust: the real Salesforce clients used to check
/// the emulator, and a browser. Idempotent: each step skips what is there.
fn install_test_dependencies() -> anyhow::Result<()> {
    install_debian_packages()?;
    let conformance = root().join("tests").join("conformance");
    if conformance.join("package-lock.json").exists() {
        let up_to_date = conformance
            .join("node_modules")
            .join(".package-lock.json")
            .exists()
            && newer(
                &conformance.join("node_modules").join(".package-lock.json"),
                &conformance.join("package-lock.json"),
            );
        if !up_to_date {
            run(Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&conformance))?;
        }
    }
    let requirements = conformance.join("requirements.txt");
    if requirements.exists() {
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "-r",
            ])
            .arg(&requirements))?;
    }
    Ok(())
}

fn newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(a), modified(b)), (Some(a), Some(b)) if a >= b)
}

fn test() -> anyhow::Result<()> {
    let started = Instant::now();
    build()?;
    check_shipped_plugins()?;
    // What `new-plugin` generates tests, builds and installs.
    new_plugin::check_skeleton()?;
    install_test_dependencies()?;
    run(cargo().args(["test", "--workspace", "--no-fail-fast"]))?;
    // The demo's story, headless, on the binaries just built.
    demo::run(true)?;
    eprintln!(
        "xtask: every test passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn lint() -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

fn bench() -> anyhow::Result<()> {
    build()?;
    // The store bench compares against a Redis it starts itself.
    install_debian_packages()?;
    run(cargo().args(["bench", "-p", "salesforce-emulator", "--bench", "emulator"]))?;
    run(cargo().args(["bench", "-p", "pbx-host", "--bench", "runtime"]))?;
    run(cargo().args(["bench", "-p", "pbx-host", "--bench", "store"]))?;
    run(cargo().args(["bench", "-p", "e2e-tests", "--bench", "association"]))?;
    run(cargo().args(["bench", "-p", "e2e-tests", "--bench", "sync"]))?;
    run(cargo().args(["bench", "-p", "e2e-tests", "--bench", "calls"]))?;
    run(cargo().args(["bench", "-p", "e2e-tests", "--bench", "swap"]))?;
    // The tenants bench runs the release host as a process of its own.
    run(cargo().args(["build", "--release", "-p", "pbx-host", "--bin", "pbx-host"]))?;
    run(cargo().args(["bench", "-p", "e2e-tests", "--bench", "tenants"]))
}
