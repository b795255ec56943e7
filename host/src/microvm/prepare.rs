//! What an instance needs before its VM boots: the image pulled, its root
//! disk and volumes built, its TAP device and the org firewall set up, and
//! the process the guest runs resolved. Blocking work (mkfs, `ip`, `nft`,
//! file writes) runs off the async runtime.

use crate::image::effective_process;
use crate::microvm::blocking;
use crate::microvm::instance::{set, Context, Status};
use crate::microvm::launch::disk_device;
use crate::microvm::network::{self, Addressing};
use crate::microvm::session::STOP_GRACE;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use vt_init::protocol as guest;
use vt_plan::Phase;
use vt_wire::messages::Assignment;

/// Disks, network and process of a prepared instance.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The instance's directory (`instances/<id>`).
    pub dir: PathBuf,
    /// Its root disk.
    pub rootfs: PathBuf,
    /// Its volume images, in device order.
    pub volumes: Vec<PathBuf>,
    /// Its TAP device.
    pub tap: String,
    /// Its addresses.
    pub addressing: Addressing,
    /// What the guest sets up (secrets are added at each boot).
    pub setup: guest::Setup,
}

/// Pulls the image, builds the disks and the network, resolves the process.
pub(crate) async fn prepare(
    ctx: &Context,
    a: &Assignment,
    status: &Mutex<Status>,
) -> Result<Prepared, String> {
    set(
        status,
        Phase::Starting,
        Some(format!("pulling {}", a.spec.image)),
    );
    let image = ctx
        .images
        .pull(&a.spec.image, &ctx.auth)
        .await
        .map_err(|e| format!("cannot pull {}: {}", a.spec.image, vt_wire::error_chain(&e)))?;
    status.lock().unwrap_or_else(|p| p.into_inner()).image = Some(image.digest.to_string());
    set(
        status,
        Phase::Starting,
        Some(format!("building the root filesystem of {}", image.digest)),
    );
    let dir = ctx.dir.join("instances").join(&a.id);
    let rootfs_path = dir.join("rootfs.ext4");
    let (images, img, dest) = (ctx.images.clone(), image.clone(), rootfs_path.clone());
    let rootfs = blocking(move || {
        let build = || {
            let rootfs = images.rootfs(&img)?;
            images.instance_disk(&rootfs, &dest)?;
            Ok::<_, crate::image::ImageError>(rootfs)
        };
        build().map_err(|e| {
            format!(
                "cannot build the root filesystem: {}",
                vt_wire::error_chain(&e)
            )
        })
    })
    .await?;

    let command = (!a.spec.command.is_empty()).then_some(a.spec.command.as_slice());
    let args = (!a.spec.args.is_empty()).then_some(a.spec.args.as_slice());
    let process = effective_process(
        &image.run_config(),
        command,
        args,
        &a.spec.env,
        &rootfs.users,
    )
    .map_err(|e| format!("cannot tell what to run: {e}"))?;

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, v) in a.spec.volumes.iter().enumerate() {
        set(
            status,
            Phase::Starting,
            Some(format!("preparing volume {}", v.name)),
        );
        let path = volume_path(&ctx.dir, a, &v.name);
        ensure_volume(&path, v.size.0).await?;
        mounts.push(guest::VolumeMount {
            device: disk_device(i + 1),
            mount: v.mount.clone(),
        });
        volumes.push(path);
    }

    let org = a.name.split('/').next().unwrap_or_default();
    let addressing = network::addressing(org, network::instance_number(&a.id));
    let tap = network::tap_name(&ctx.host, &a.id);
    let name = tap.clone();
    blocking(move || network::create_tap(&name, &addressing).map_err(|e| e.to_string())).await?;
    let orgs = {
        let mut orgs = ctx.orgs.lock().unwrap_or_else(|p| p.into_inner());
        orgs.insert(network::org_prefix(org))
            .then(|| orgs.iter().copied().collect::<Vec<_>>())
    };
    if let Some(orgs) = orgs {
        blocking(move || network::isolate(&orgs).map_err(|e| format!("cannot isolate orgs: {e}")))
            .await?;
    }

    let setup = guest::Setup {
        hostname: a.id.replace('_', "-"),
        ipv6: Some(guest::Ipv6Config {
            address: addressing.guest,
            prefix_len: 64,
            gateway: Some(addressing.gateway),
        }),
        env: process.env.into_iter().collect(),
        argv: process.argv,
        workdir: process.workdir,
        uid: process.uid,
        gid: process.gid,
        secrets: Vec::new(),
        volumes: mounts,
        grace_ms: u64::try_from(STOP_GRACE.as_millis()).unwrap_or(10_000),
    };
    Ok(Prepared {
        dir,
        rootfs: rootfs_path,
        volumes,
        tap,
        addressing,
        setup,
    })
}

/// Removes what [`prepare`] made for one instance and nothing else keeps:
/// its TAP and its root disk (volumes stay).
pub(crate) async fn clean_up(prepared: &Prepared) {
    let (tap, addressing) = (prepared.tap.clone(), prepared.addressing);
    let _ =
        blocking(move || network::delete_tap(&tap, &addressing).map_err(|e| e.to_string())).await;
    let _ = tokio::fs::remove_file(&prepared.rootfs).await;
}

/// Where a volume of a workload lives on this host: named by the workload's
/// IDs, the volume name and the slot, never by the instance, so it outlives
/// instances and releases.
pub fn volume_path(dir: &Path, a: &Assignment, name: &str) -> PathBuf {
    let slot = a.slot.map(|s| format!("-{s}")).unwrap_or_default();
    dir.join("volumes")
        .join(format!("{}-{}", a.key.app_id, a.key.env_id))
        .join(format!("{name}{slot}.ext4"))
}

/// Creates a sparse ext4 volume image of `size` bytes, unless it exists.
async fn ensure_volume(path: &Path, size: u64) -> Result<(), String> {
    if tokio::fs::try_exists(path).await.unwrap_or(false) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let free = fs_free(parent).await;
    if free.is_some_and(|f| f < size / 20) {
        return Err(format!(
            "not enough disk space for volume {} ({} requested)",
            path.display(),
            vt_repo::ByteSize(size)
        ));
    }
    let tmp = path.with_extension("tmp");
    let file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    file.set_len(size)
        .await
        .map_err(|e| format!("cannot size {}: {e}", tmp.display()))?;
    drop(file);
    let out = tokio::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&tmp)
        .output()
        .await
        .map_err(|e| format!("cannot run mkfs.ext4: {e}"))?;
    if !out.status.success() {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(format!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Free bytes on the filesystem holding `path` (via `df`), if known.
async fn fs_free(path: &Path) -> Option<u64> {
    let out = tokio::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}
