//! Builds the browser's E2EE module so `cargo run --release` on a fresh clone serves it with
//! no extra step: compiles `crates/conclave-e2ee-wasm` for wasm32-unknown-unknown in a nested
//! cargo (its own target dir, size-optimised), then runs wasm-bindgen (`--target web`) as a
//! library into `$OUT_DIR/e2ee/`, which `src/http/web.rs` embeds with `include_bytes!`.
//!
//! The wasm32 target is added with `rustup target add` when the toolchain lacks it
//! (RUSTUP_AUTO_INSTALL=0 means rust-toolchain.toml alone installs nothing).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TARGET: &str = "wasm32-unknown-unknown";
const WASM_CRATE: &str = "conclave-e2ee-wasm";
/// Name of the cdylib artifact of WASM_CRATE.
const WASM_ARTIFACT: &str = "conclave_e2ee_wasm.wasm";
/// What the server serves: `/e2ee/conclave_e2ee.js` and `/e2ee/conclave_e2ee_bg.wasm`.
const OUT_NAME: &str = "conclave_e2ee";

fn main() {
    if let Err(message) = run() {
        // A panic in a build script prints its message in cargo's error output.
        panic!("\n\nbuilding the E2EE wasm module failed:\n{message}\n");
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let workspace = manifest_dir
        .parent()
        .and_then(Path::parent)
        .ok_or("crates/conclave has no workspace above it")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);

    for path in [
        "crates/conclave-e2ee/src",
        "crates/conclave-e2ee/Cargo.toml",
        "crates/conclave-e2ee-wasm/src",
        "crates/conclave-e2ee-wasm/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo::rerun-if-changed={}", workspace.join(path).display());
    }

    let started = Instant::now();
    ensure_target()?;
    let wasm = build_wasm(&workspace, &out_dir)?;
    let built = started.elapsed();
    let dest = out_dir.join("e2ee");
    std::fs::create_dir_all(&dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .out_name(OUT_NAME)
        .web(true)
        .map_err(|e| format!("wasm-bindgen: {e}"))?
        .typescript(false)
        // The CLI default: `init()` with no argument fetches the .wasm next to the glue.
        .omit_default_module_path(false)
        .generate(&dest)
        .map_err(|e| format!("wasm-bindgen on {}: {e:#}", wasm.display()))?;
    write_snippet_list(&dest, &out_dir)?;
    let size = std::fs::metadata(dest.join(format!("{OUT_NAME}_bg.wasm")))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "cargo::warning=E2EE wasm module: {size} bytes (cargo {:.1} s, total {:.1} s)",
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The toolchain's own rustc (cargo hands build scripts the one it uses).
fn rustc() -> String {
    env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

fn ensure_target() -> Result<(), String> {
    let output = Command::new(rustc())
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("running `{} --print sysroot`: {e}", rustc()))?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .is_dir()
    {
        return Ok(());
    }
    println!("cargo::warning=adding the {TARGET} target with rustup (once)");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map_err(|e| {
            format!(
                "the {TARGET} target is not installed and rustup could not be run ({e}).\n\
                 Install rustup (https://rustup.rs) or add the target to this toolchain's \
                 sysroot ({sysroot}) by hand."
            )
        })?;
    if !status.success() {
        return Err(format!("`rustup target add {TARGET}` failed ({status})"));
    }
    Ok(())
}

/// The outer build's target dir (the ancestor of OUT_DIR that cargo marked with CACHEDIR.TAG),
/// so every developer's own target dir gets its own wasm build; `<workspace>/target` otherwise.
fn wasm_target_dir(workspace: &Path, out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm")
}

fn build_wasm(workspace: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    let target_dir = wasm_target_dir(workspace, out_dir);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "-p", WASM_CRATE])
        .arg("--target-dir")
        .arg(&target_dir);
    // What the outer cargo set for this build script (flags for the host, its target dir,
    // its jobserver, per-package variables) must not leak into the nested build.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let strip = matches!(
            key,
            "RUSTFLAGS"
                | "CARGO_ENCODED_RUSTFLAGS"
                | "RUSTDOCFLAGS"
                | "CARGO_ENCODED_RUSTDOCFLAGS"
                | "CARGO_TARGET_DIR"
                | "CARGO_BUILD_TARGET_DIR"
                | "CARGO_BUILD_TARGET"
                | "CARGO_BUILD_RUSTFLAGS"
                | "CARGO_MAKEFLAGS"
                | "MAKEFLAGS"
                | "MFLAGS"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "OUT_DIR"
                | "TARGET"
                | "HOST"
                | "PROFILE"
                | "OPT_LEVEL"
                | "DEBUG"
                | "NUM_JOBS"
                | "CARGO_PRIMARY_PACKAGE"
        ) || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("DEP_");
        if strip {
            cmd.env_remove(key);
        }
    }
    // Small over fast: the module is downloaded by every browser.
    cmd.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    if let Ok(jobs) = env::var("NUM_JOBS") {
        cmd.args(["-j", &jobs]);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running `{cargo} build --target {TARGET}`: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --release --target {TARGET} -p {WASM_CRATE}` failed ({status}); \
             its output is above"
        ));
    }
    let wasm = target_dir.join(TARGET).join("release").join(WASM_ARTIFACT);
    if !wasm.is_file() {
        return Err(format!("{} was not produced", wasm.display()));
    }
    Ok(wasm)
}

/// wasm-bindgen writes `inline_js` of dependencies (mls-rs-core's clock) as
/// `snippets/<crate-hash>/inlineN.js`, which the glue imports by relative path. List them in
/// `$OUT_DIR/e2ee_snippets.rs` as `(path under snippets/, bytes)` for web.rs to serve.
fn write_snippet_list(dest: &Path, out_dir: &Path) -> Result<(), String> {
    let mut entries = Vec::new();
    let root = dest.join("snippets");
    if root.is_dir() {
        for dir in std::fs::read_dir(&root).map_err(|e| e.to_string())? {
            let dir = dir.map_err(|e| e.to_string())?.path();
            for file in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
                let file = file.map_err(|e| e.to_string())?.path();
                let rel = file
                    .strip_prefix(&root)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .replace('\\', "/");
                entries.push(format!(
                    "    ({rel:?}, include_bytes!({:?})),\n",
                    file.display().to_string()
                ));
            }
        }
    }
    entries.sort();
    let code = format!(
        "/// Generated by build.rs: wasm-bindgen's JS snippets, by path under `/e2ee/snippets/`.\n\
         pub const E2EE_SNIPPETS: &[(&str, &[u8])] = &[\n{}];\n",
        entries.concat()
    );
    std::fs::write(out_dir.join("e2ee_snippets.rs"), code).map_err(|e| e.to_string())
}
