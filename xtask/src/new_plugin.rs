//! `cargo xtask new-plugin NAME`: a plugin crate to start from, in
//! `plugins/NAME/`, from the templates in `xtask/templates/plugin/`: the
//! logic over `H: Host` answering every export (settings, status, and
//! clear "not configured" / "not connected" / "not written yet" answers for
//! what needs the CRM), its unit tests against `FakeHost`, the component's
//! glue with the manifest section, and the manifest. The crate joins the
//! workspace's members.
//!
//! `check_skeleton` (run by `cargo xtask test`) is the proof that the
//! templates stay good: it generates a skeleton into a scratch workspace
//! (the real one's `Cargo.toml` and `Cargo.lock`, with `sdk/` and `wit/`
//! linked in), runs its tests, builds it for wasm32-wasip2 and installs it
//! on a host it starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::demo::{Guard, wait_for_file};
use crate::{WASM_TARGET, bin, cargo, root, run, target_dir, wasm_cargo};

const CARGO_TOML: &str = include_str!("../templates/plugin/Cargo.toml.tmpl");
const MANIFEST: &str = include_str!("../templates/plugin/manifest.json.tmpl");
const LIB_RS: &str = include_str!("../templates/plugin/lib.rs.tmpl");
const COMPONENT_RS: &str = include_str!("../templates/plugin/component.rs.tmpl");

/// Ids the project's own crates or the host already use.
const TAKEN: &[&str] = &["salesforce", "hubspot", "host", "sdk"];

/// Whether `name` can be a plugin's id and its crate's name: what the
/// host takes as a manifest id (a-z, 0-9, '-'), starting with a letter
/// (cargo refuses a package name starting with a digit), without an empty
/// part between '-'s, at most 40 characters (the crate adds `-plugin`).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 40 {
        return Err(format!("{name:?} must be 1-40 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "{name:?} may hold only a-z, 0-9 and '-' (it is the plugin's id in the manifest)"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("{name:?} must start with a letter a-z"));
    }
    if name.split('-').any(str::is_empty) {
        return Err(format!(
            "{name:?} must not end with '-' nor have two '-' in a row"
        ));
    }
    if TAKEN.contains(&name) {
        return Err(format!("{name:?} is taken by the project's own crates"));
    }
    Ok(())
}

/// "acme-crm" → "Acme Crm": the CRM's name the skeleton starts with.
fn display_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn fill(template: &str, name: &str) -> String {
    template
        .replace("{{id}}", name)
        .replace("{{package}}", &format!("{name}-plugin"))
        .replace("{{name}}", &display_name(name))
}

/// The workspace's `Cargo.toml` with `member` added to its `members`.
fn add_member(cargo_toml: &str, member: &str) -> anyhow::Result<String> {
    let start = cargo_toml
        .find("\nmembers = [")
        .context("the workspace's Cargo.toml has no `members = [` line")?;
    let end = cargo_toml[start..]
        .find("\n]")
        .map(|i| start + i)
        .context("the workspace's `members` list does not end with a `]` line")?;
    let entry = format!("\"{member}\"");
    if cargo_toml[start..end].contains(&entry) {
        bail!("{member} is already a workspace member");
    }
    Ok(format!(
        "{}\n    {entry},{}",
        &cargo_toml[..end],
        &cargo_toml[end..]
    ))
}

/// Writes `plugins/NAME/` under the workspace at `root` and adds it to the
/// members; answers the crate's directory. Refuses a bad name and a
/// directory that exists, before writing anything.
pub fn generate(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    check_name(name).map_err(|why| anyhow::anyhow!("cannot name a plugin so: {why}"))?;
    let member = format!("plugins/{name}");
    let dir = root.join(&member);
    if dir.exists() {
        bail!(
            "{} exists already; choose another name or remove it",
            dir.display()
        );
    }
    let workspace = root.join("Cargo.toml");
    let cargo_toml = std::fs::read_to_string(&workspace)
        .with_context(|| format!("cannot read {}", workspace.display()))?;
    let cargo_toml = add_member(&cargo_toml, &member)?;
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (path, template) in [
        ("Cargo.toml", CARGO_TOML),
        ("manifest.json", MANIFEST),
        ("src/lib.rs", LIB_RS),
        ("src/component.rs", COMPONENT_RS),
    ] {
        let path = dir.join(path);
        std::fs::write(&path, fill(template, name))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    std::fs::write(&workspace, cargo_toml)
        .with_context(|| format!("cannot write {}", workspace.display()))?;
    Ok(dir)
}

/// `cargo xtask new-plugin NAME`.
pub fn new_plugin(name: &str) -> anyhow::Result<()> {
    let dir = generate(&root(), name)?;
    eprintln!(
        "xtask: created {} (crate {name}-plugin, id {name}) and added it to the workspace.\n\
         next:\n  \
         cargo test -p {name}-plugin\n  \
         cargo build -p {name}-plugin --release --target {WASM_TARGET}\n  \
         pbx-host plugin install target/{WASM_TARGET}/release/{}_plugin.wasm --data-dir DIR\n\
         then give the manifest your CRM's hosts and replace what answers \"not written yet\" \
         (docs/PLUGINS.md)",
        dir.display(),
        name.replace('-', "_"),
    );
    Ok(())
}

/// The skeleton generated into a scratch workspace passes its tests,
/// builds for wasm32-wasip2 and installs on a host.
pub fn check_skeleton() -> anyhow::Result<()> {
    const NAME: &str = "xtask-skeleton-check";
    let scratch = target_dir().join("skeleton-check");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let root = root();
    // The real workspace's settings and pinned versions, with no member
    // but the SDK (linked in, with the contract it generates from).
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let cargo_toml = only_sdk_member(&cargo_toml)?;
    std::fs::write(scratch.join("Cargo.toml"), cargo_toml)?;
    std::fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock"))?;
    for linked in ["sdk", "wit"] {
        std::os::unix::fs::symlink(root.join(linked), scratch.join(linked))
            .with_context(|| format!("cannot link {linked} into {}", scratch.display()))?;
    }
    generate(&scratch, NAME)?;
    let manifest = scratch.join("Cargo.toml");
    let package = format!("{NAME}-plugin");
    // The scratch workspace builds into the real target directory: the
    // wasm lands where it is looked for below, and the dependencies
    // already built there are reused. As generated, it is formatted and
    // lint-clean.
    run(cargo()
        .env("CARGO_TARGET_DIR", target_dir())
        .arg("fmt")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", &package, "--", "--check"]))?;
    run(cargo()
        .env("CARGO_TARGET_DIR", target_dir())
        .arg("clippy")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", &package, "--all-targets", "--", "-D", "warnings"]))?;
    run(cargo()
        .env("CARGO_TARGET_DIR", target_dir())
        .arg("test")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", &package]))?;
    run(wasm_cargo()
        .env("CARGO_TARGET_DIR", target_dir())
        .args(["build", "--release", "--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", &package]))?;
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}_plugin.wasm", NAME.replace('-', "_")));
    install_on_a_host(&scratch, &wasm)?;
    eprintln!("xtask: the new-plugin skeleton tests, builds and installs");
    Ok(())
}

/// The workspace's `Cargo.toml` with `members = ["sdk"]`, no
/// `default-members` and no per-package profiles (their packages are not
/// in the scratch workspace).
fn only_sdk_member(cargo_toml: &str) -> anyhow::Result<String> {
    let start = cargo_toml
        .find("\nmembers = [")
        .context("the workspace's Cargo.toml has no `members = [` line")?;
    let end = cargo_toml[start..]
        .find("\n]")
        .map(|i| start + i + 2)
        .context("the workspace's `members` list does not end with a `]` line")?;
    let text = format!(
        "{}\nmembers = [\n    \"sdk\",\n]{}",
        &cargo_toml[..start],
        &cargo_toml[end..]
    );
    let mut out = String::new();
    let mut in_package_profile = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_package_profile = line.starts_with("[profile.") && line.contains(".package.");
        }
        if in_package_profile || line.starts_with("default-members") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// `pbx-host plugin install` of `wasm` on a host started in `scratch`.
fn install_on_a_host(scratch: &Path, wasm: &Path) -> anyhow::Result<()> {
    let data_dir = scratch.join("pbx-data");
    let log = std::fs::File::create(scratch.join("host.log"))?;
    let mut host = Guard::spawn(
        Command::new(bin("pbx-host"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    wait_for_file(
        &data_dir.join("admin-token"),
        &mut host,
        Duration::from_secs(30),
    )?;
    let out = Command::new(bin("pbx-host"))
        .args(["plugin", "install"])
        .arg(wasm)
        .arg("--data-dir")
        .arg(&data_dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run pbx-host plugin install")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("installed xtask-skeleton-check 0.1.0") {
        bail!(
            "pbx-host plugin install {} failed: {}{}",
            wasm.display(),
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    eprintln!("xtask: {}", stdout.trim());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_pass() {
        for name in ["acme", "acme-crm", "zoho2", "a"] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for (name, why) in [
            ("", "1-40 characters"),
            (&"a".repeat(41), "1-40 characters"),
            ("Acme", "only a-z"),
            ("acme_crm", "only a-z"),
            ("acme crm", "only a-z"),
            ("../etc", "only a-z"),
            ("2crm", "start with a letter"),
            ("-acme", "start with a letter"),
            ("acme-", "two '-'"),
            ("ac--me", "two '-'"),
            ("salesforce", "taken"),
            ("hubspot", "taken"),
        ] {
            let err = check_name(name).expect_err(name);
            assert!(err.contains(why), "{name}: {err}");
        }
    }

    #[test]
    fn the_crm_name_is_the_id_in_words() {
        assert_eq!(display_name("acme-crm"), "Acme Crm");
        assert_eq!(display_name("zoho"), "Zoho");
    }

    const WORKSPACE: &str = "[workspace]\nresolver = \"3\"\nmembers = [\n    \"host\",\n    \"sdk\",\n]\ndefault-members = [\"host\"]\n\n[workspace.package]\nedition = \"2024\"\n\n[profile.release.package.salesforce-plugin]\nopt-level = \"s\"\n\n[profile.dev]\ndebug = 1\n";

    fn scratch(test: &str) -> PathBuf {
        let dir = target_dir()
            .join("xtask-unit")
            .join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        std::fs::write(dir.join("Cargo.toml"), WORKSPACE).expect("workspace written");
        dir
    }

    #[test]
    fn it_generates_the_crate_and_joins_the_workspace() {
        let root = scratch("generate");
        let dir = generate(&root, "acme-crm").expect("generated");
        assert_eq!(dir, root.join("plugins/acme-crm"));
        for file in [
            "Cargo.toml",
            "manifest.json",
            "src/lib.rs",
            "src/component.rs",
        ] {
            let text = std::fs::read_to_string(dir.join(file)).expect(file);
            assert!(!text.contains("{{"), "{file} keeps a placeholder");
        }
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
        )
        .expect("the manifest is JSON");
        assert_eq!(manifest["id"], "acme-crm");
        assert_eq!(manifest["name"], "Acme Crm");
        assert_eq!(manifest["api"], "pbx:crm@0.5.0");
        let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        assert!(cargo_toml.contains("name = \"acme-crm-plugin\""));
        assert!(cargo_toml.contains("pbx-crm-sdk = { path = \"../../sdk\" }"));
        let workspace = std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace");
        assert!(
            workspace.contains("    \"sdk\",\n    \"plugins/acme-crm\",\n]"),
            "{workspace}"
        );
        assert!(workspace.contains("default-members = [\"host\"]"));

        // Again: the directory exists, and nothing changes.
        let err = generate(&root, "acme-crm").expect_err("refused");
        assert!(err.to_string().contains("exists already"), "{err}");
        assert_eq!(
            std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace"),
            workspace
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_bad_name_writes_nothing() {
        let root = scratch("bad-name");
        let err = generate(&root, "../acme").expect_err("refused");
        assert!(err.to_string().contains("only a-z"), "{err}");
        assert!(!root.join("plugins").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace"),
            WORKSPACE
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_scratch_workspace_has_only_the_sdk() {
        let text = only_sdk_member(WORKSPACE).expect("rewritten");
        assert!(text.contains("members = [\n    \"sdk\",\n]\n"), "{text}");
        assert!(!text.contains("default-members"), "{text}");
        assert!(text.contains("[workspace.package]"), "{text}");
        assert!(!text.contains("salesforce-plugin"), "{text}");
        assert!(text.contains("[profile.dev]\ndebug = 1\n"), "{text}");
    }
}
