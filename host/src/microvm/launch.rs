//! The qemu command line of one microVM, built from what the instance needs.
//! Pure: the supervisor runs what this returns.

use std::path::PathBuf;

/// Which accelerator qemu uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation; only where a probe guest really boots.
    Kvm,
    /// Software emulation; always works, slower.
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Everything one launch needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// qemu binary.
    pub qemu: PathBuf,
    /// Uncompressed kernel (PVH boot).
    pub kernel: PathBuf,
    /// Initramfs with vt-init.
    pub initramfs: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// Virtual cpus.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The root filesystem image (`/dev/vda`).
    pub rootfs: PathBuf,
    /// Volume images, in order (`/dev/vdb`, `/dev/vdc`, ...).
    pub volumes: Vec<PathBuf>,
    /// TAP device name, if the instance has a network.
    pub tap: Option<String>,
    /// The guest NIC's MAC address.
    pub mac: String,
    /// Unix socket of the host↔guest channel.
    pub channel: PathBuf,
    /// Where the serial console goes.
    pub console: PathBuf,
    /// The TSC frequency the guest is told (see [`host_tsc_khz`]).
    pub tsc_khz: u64,
}

/// The host's cpu frequency in kHz from `/proc/cpuinfo`, 2 GHz if unknown.
pub fn host_tsc_khz() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(2_000_000, |mhz| (mhz * 1000.0) as u64)
}

/// The guest device of the `n`th disk (0 is the rootfs).
pub fn disk_device(n: usize) -> String {
    let letter = char::from(b'a' + u8::try_from(n % 26).unwrap_or(0));
    format!("/dev/vd{letter}")
}

/// The vcpus for a cpu amount in millicores: at least one, rounded up.
pub fn vcpus(cpu_millis: u32) -> u32 {
    cpu_millis.div_ceil(1000).max(1)
}

impl LaunchSpec {
    /// The qemu arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        // The microvm machine's default PIT and RTC are what the guest kernel
        // calibrates its clock against: keep them.
        push(&["-M", &format!("microvm,accel={}", self.accel)]);
        if self.accel == Accel::Kvm {
            // The nested KVM seen here rejects MSR 0x10a (see microvm-notes).
            push(&["-cpu", "host,-arch-capabilities"]);
        }
        push(&[
            "-smp",
            &self.vcpus.to_string(),
            "-m",
            &format!("{}M", self.memory_mib),
        ]);
        push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
        push(&[
            "-kernel",
            &self.kernel.display().to_string(),
            "-initrd",
            &self.initramfs.display().to_string(),
        ]);
        // The TSC frequency is given, not measured: under TCG on a busy host
        // the kernel's calibration against the PIT fails and the boot hangs
        // at "Marking TSC unstable" (seen here).
        let append = format!(
            "console=ttyS0 quiet reboot=t panic=-1 tsc_early_khz={} tsc=reliable",
            self.tsc_khz
        );
        push(&["-append", &append]);
        push(&["-serial", &format!("file:{}", self.console.display())]);
        // A pid file next to the console: a restarted agent kills VMs it left behind.
        let pidfile = self.console.with_file_name("qemu.pid");
        push(&["-pidfile", &pidfile.display().to_string()]);
        let disks = std::iter::once(&self.rootfs).chain(&self.volumes);
        for (i, disk) in disks.enumerate() {
            push(&[
                "-drive",
                &format!(
                    "id=d{i},file={},format=raw,if=none,cache=none,aio=threads",
                    disk.display()
                ),
            ]);
            push(&["-device", &format!("virtio-blk-device,drive=d{i}")]);
        }
        if let Some(tap) = &self.tap {
            push(&[
                "-netdev",
                &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            ]);
            push(&[
                "-device",
                &format!("virtio-net-device,netdev=n0,mac={}", self.mac),
            ]);
        }
        push(&[
            "-chardev",
            &format!(
                "socket,id=ch0,path={},server=on,wait=off",
                self.channel.display()
            ),
        ]);
        push(&[
            "-device",
            "virtio-serial-device",
            "-device",
            "virtserialport,chardev=ch0,name=vt",
        ]);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_has_the_devices_in_order() {
        let spec = LaunchSpec {
            qemu: "qemu-system-x86_64".into(),
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs.cpio.gz".into(),
            accel: Accel::Tcg,
            vcpus: vcpus(1500),
            memory_mib: 256,
            rootfs: "/i/rootfs.ext4".into(),
            volumes: vec!["/v/data.ext4".into()],
            tap: Some("vt1".into()),
            mac: "52:54:00:00:00:01".into(),
            channel: "/i/chan.sock".into(),
            console: "/i/console.log".into(),
            tsc_khz: 2_000_000,
        };
        let args = spec.args().join(" ");
        assert!(
            args.starts_with("-M microvm,accel=tcg -smp 2 -m 256M"),
            "{args}"
        );
        assert!(
            args.contains("tsc_early_khz=2000000 tsc=reliable"),
            "{args}"
        );
        assert!(args.contains("id=d0,file=/i/rootfs.ext4"), "{args}");
        assert!(args.contains("id=d1,file=/v/data.ext4"), "{args}");
        assert!(args.contains("tap,id=n0,ifname=vt1"), "{args}");
        assert!(
            args.contains("virtserialport,chardev=ch0,name=vt"),
            "{args}"
        );
        assert_eq!(
            (disk_device(0), disk_device(1)),
            ("/dev/vda".to_string(), "/dev/vdb".to_string())
        );
    }
}
