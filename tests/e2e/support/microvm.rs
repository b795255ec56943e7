//! What every microVM test needs: the tools and guest checked, an image built
//! from directories and pushed to a real registry, and `vt host run` with the
//! microVM runtime.

use super::fleet::{Controller, FleetDir};
use super::process::Proc;
use super::Sandbox;
use std::path::Path;
use vt_host::image::testing::{build_image, push, require, Registry};
use vt_host::image::ImageConfig;
use vt_host::microvm::artifacts::{guest_dir, GuestArtifacts};

/// Held by each test that boots microVMs: under TCG two such tests at once
/// starve each other's guests (health checks time out), so they take turns.
static MICROVMS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This test's turn to boot microVMs (released when dropped).
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    MICROVMS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Panics with what to run unless qemu, docker-registry, e2fsprogs, the
/// guest artifacts and `extra` programs (program, Debian package) are there;
/// then waits for this test's turn to boot microVMs.
#[must_use = "hold the turn for the whole test"]
pub fn require_microvms(extra: &[(&str, &str)]) -> std::sync::MutexGuard<'static, ()> {
    let mut programs = vec![
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("docker-registry", "docker-registry"),
        ("mkfs.ext4", "e2fsprogs"),
    ];
    programs.extend_from_slice(extra);
    require(&programs).expect("run `just setup`");
    GuestArtifacts::find(&guest_dir()).unwrap_or_else(|e| panic!("{e} (run `just guest`)"));
    exclusive()
}

/// A layer with busybox-static (`/bin/busybox`, `/bin/sh`) and `/www/index.html`
/// holding `index`, in `<root>/image-root`.
pub fn busybox_layer(root: &Path, index: &str) -> std::path::PathBuf {
    let dir = root.join("image-root");
    std::fs::create_dir_all(dir.join("bin")).expect("mkdir bin");
    std::fs::create_dir_all(dir.join("www")).expect("mkdir www");
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static is installed (just setup)");
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).expect("symlink sh");
    std::fs::write(dir.join("www/index.html"), index).expect("index.html");
    dir
}

/// Builds an image of `layers` running `sh -c SCRIPT` with `env`, pushes it to
/// `registry` as `web:1`, and returns its reference.
pub fn publish(
    sb: &Sandbox,
    registry: &Registry,
    layers: &[&Path],
    script: &str,
    env: &[&str],
) -> String {
    let layout = sb.path().join("layout");
    let config = ImageConfig {
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
        env: Some(env.iter().map(|e| e.to_string()).collect()),
        ..ImageConfig::default()
    };
    build_image(&layout, "1", layers, &config).expect("build the image");
    let reference = registry.reference("web:1");
    tokio::runtime::Runtime::new()
        .expect("tokio")
        .block_on(push(&layout, "1", &reference))
        .expect("push the image");
    reference
}

/// Starts `vt host run --runtime microvm --accel auto` named `h1` with 2 cpu
/// and 2Gi, enrolled with a fresh token, plus `extra` arguments.
pub fn start_host(sb: &Sandbox, fleet: &FleetDir, controller: &Controller, extra: &[&str]) -> Proc {
    start_host_with(sb, fleet, controller, extra, &[])
}

/// [`start_host`] with more environment variables (`DOCKER_CONFIG`).
pub fn start_host_with(
    sb: &Sandbox,
    fleet: &FleetDir,
    controller: &Controller,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> Proc {
    let token = fleet.join_token("host", "10m");
    let quic = controller.quic.to_string();
    let host_dir = sb.path().join("h1").display().to_string();
    // The sandbox has its own HOME: point the host at the real guest artifacts.
    let guest = guest_dir().display().to_string();
    let mut args = vec![
        "host",
        "run",
        "--controller",
        &quic,
        "--token",
        &token,
        "--name",
        "h1",
        "--state-dir",
        &host_dir,
        "--cpu",
        "2",
        "--memory",
        "2Gi",
        "--runtime",
        "microvm",
        "--accel",
        "auto",
    ];
    args.extend_from_slice(extra);
    let mut all = vec![("VT_GUEST_DIR", guest.as_str())];
    all.extend_from_slice(vars);
    sb.env().spawn_vt_with("h1", Path::new("/"), &args, &all)
}
