//! Starter repositories for `vt init --template NAME`, compiled into the
//! binary from `templates/` so `vt` needs no source tree.

/// A template: its name, what it is, and its files (path → content; IDs are
/// [`vt_repo::write::TEMPLATE_ID`] placeholders).
#[derive(Debug)]
pub struct Template {
    /// `vt init --template NAME`.
    pub name: &'static str,
    /// One line for `--help` and errors.
    pub about: &'static str,
    /// Path → content.
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! files {
    ($dir:literal: $($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../templates/", $dir, "/", $path)))),*]
    };
}

/// Every template.
pub const ALL: &[Template] = &[Template {
    name: "hello",
    about: "busybox httpd behind an endpoint, with a volume; its image is built from images/hello/ by `vt dev`",
    files: files!("hello":
        "vt.yaml",
        "orgs/hello/org.yaml",
        "orgs/hello/site/project.yaml",
        "orgs/hello/site/web/app.yaml",
        "orgs/hello/site/web/envs/dev.yaml",
        "images/hello/image.yaml",
        "images/hello/rootfs/start.sh",
        "images/hello/rootfs/www/index.html",
    ),
}];

/// The template named `name`.
pub fn find(name: &str) -> Option<&'static Template> {
    ALL.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read the template") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files_under(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under the root");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }

    #[test]
    fn every_file_of_each_template_directory_is_compiled_in() {
        for template in ALL {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../templates")
                .join(template.name);
            let mut on_disk = Vec::new();
            files_under(&root, &root, &mut on_disk);
            on_disk.sort();
            let mut embedded: Vec<String> =
                template.files.iter().map(|(p, _)| p.to_string()).collect();
            embedded.sort();
            assert_eq!(embedded, on_disk, "templates/{}", template.name);
        }
        assert!(find("hello").is_some() && find("nope").is_none());
    }
}
