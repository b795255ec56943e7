//! Kernel modules: the Debian cloud kernel builds virtio, virtio_blk,
//! virtio_net and virtio_console as modules, so the initramfs carries them
//! and lists them, dependencies first, in `/lib/modules/load-order`.

use crate::sys;
use std::fs::File;
use std::io;
use std::path::Path;

/// Where the host's initramfs builder lists the modules to load.
pub const LOAD_ORDER: &str = "/lib/modules/load-order";

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses the module itself.
const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

/// The module paths in a load-order file: one per line, blank lines and
/// `#` comments skipped, surrounding whitespace trimmed.
pub fn parse_load_order(text: &str) -> Vec<&str> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .collect()
}

/// `finit_module` flags for a module file: compressed ones are handed to the
/// kernel to decompress (it needs `CONFIG_MODULE_DECOMPRESS`).
pub fn flags_for(path: &str) -> libc::c_int {
    if [".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|suffix| path.ends_with(suffix))
    {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    }
}

/// Loads every module the load-order file lists; a module already loaded
/// (or built in) is fine. Returns one message per module that failed; a
/// missing load-order file is not an error (the kernel may have it all).
pub fn load_all(load_order: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(load_order) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![format!("cannot read {}: {e}", load_order.display())],
    };
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut errors = Vec::new();
    for path in parse_load_order(&text) {
        if let Err(e) = load(path, &params_for(path, &cmdline)) {
            errors.push(format!("cannot load module {path}: {e}"));
        }
    }
    errors
}

/// The parameters the kernel command line gives a module (`virtio_mmio.device=...`
/// is how the microvm machine describes its devices when ACPI is off):
/// modprobe's job, which PID 1 of an initramfs has to do itself.
pub fn params_for(path: &str, cmdline: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let module = file.split(".ko").next().unwrap_or(file).replace('-', "_");
    cmdline
        .split_whitespace()
        .filter_map(|word| {
            word.split_once('.')
                .filter(|(m, _)| m.replace('-', "_") == module)
                .map(|(_, param)| param)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn load(path: &str, params: &str) -> io::Result<()> {
    let file = File::open(path)?;
    let params = std::ffi::CString::new(params)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in module parameters"))?;
    match sys::finit_module(&file, &params, flags_for(path)) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_parameters_come_from_the_command_line() {
        let cmdline = "console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11 quiet";
        assert_eq!(
            params_for("/lib/modules/virtio_mmio.ko", cmdline),
            "device=512@0xfeb00e00:12 device=512@0xfeb00c00:11"
        );
        assert_eq!(params_for("/lib/modules/virtio_blk.ko", cmdline), "");
    }

    #[test]
    fn parses_load_order() {
        let text = "\
# virtio core first
/lib/modules/6.1.0-cloud/kernel/drivers/virtio/virtio.ko
  /lib/modules/x/virtio_ring.ko  

/lib/modules/x/virtio_mmio.ko # comment
#/lib/modules/x/skipped.ko
";
        assert_eq!(
            parse_load_order(text),
            [
                "/lib/modules/6.1.0-cloud/kernel/drivers/virtio/virtio.ko",
                "/lib/modules/x/virtio_ring.ko",
                "/lib/modules/x/virtio_mmio.ko",
            ]
        );
        assert!(parse_load_order("").is_empty());
    }

    #[test]
    fn compressed_modules_get_the_flag() {
        assert_eq!(flags_for("/m/virtio_blk.ko"), 0);
        assert_eq!(
            flags_for("/m/virtio_blk.ko.xz"),
            MODULE_INIT_COMPRESSED_FILE
        );
        assert_eq!(
            flags_for("/m/virtio_blk.ko.zst"),
            MODULE_INIT_COMPRESSED_FILE
        );
    }

    #[test]
    fn missing_load_order_is_fine() {
        assert!(load_all(Path::new("/nonexistent/vt-init/load-order")).is_empty());
    }
}
