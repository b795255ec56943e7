//! Property: any valid spec survives write → load unchanged.

use crate::{snapshot, valid_files};
use proptest::prelude::*;
use std::collections::BTreeMap;
use vt_repo::schema::{
    self as s, Endpoint, Health, HealthKind, Port, ProxyProtocol, Resources, Rollout, SecretRef,
    Spec, Volume,
};
use vt_repo::{load, ByteSize, Cpu, Duration, Snapshot};

fn label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]"
}

fn ports() -> impl Strategy<Value = Vec<Port>> {
    prop::collection::btree_map(label(), 1..=65535u16, 1..4).prop_map(|m| {
        m.into_iter()
            .map(|(name, port)| Port { name, port })
            .collect()
    })
}

fn health() -> impl Strategy<Value = Health> {
    (
        prop::option::of(1..60u64),
        prop::option::of(1..3u32),
        any::<bool>(),
    )
        .prop_map(|(interval, threshold, http)| Health {
            kind: Some(if http {
                HealthKind::Http
            } else {
                HealthKind::Tcp
            }),
            path: http.then(|| "/healthz".to_string()),
            status: http.then_some(204),
            interval: interval.map(|s| Duration(s * 1000 + 2000)),
            timeout: Some(Duration(2000)),
            unhealthy_threshold: threshold,
            ..Health::default()
        })
}

prop_compose! {
    fn spec()(
        tag in "[a-z0-9][a-z0-9.-]{0,8}",
        command in prop::option::of(prop::collection::vec("[ -~]{0,12}", 0..3)),
        env in prop::option::of(prop::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", "[ -~]{0,16}", 0..4)),
        cpu in prop::option::of(1..8000u32),
        memory_mib in prop::option::of(64..8192u64),
        instances in prop::option::of(0..10u32),
        regions in prop::option::of(prop::sample::subsequence(vec!["local".to_string(), "eu-west".to_string()], 1..=2)),
        ports in ports(),
        ipv4 in prop::option::of(any::<bool>()),
        volume_gib in prop::option::of(1..100u64),
        health in prop::option::of(health()),
        immediate in any::<bool>(),
    ) -> Spec {
        let endpoint = Endpoint { name: "public".into(), port: 443, target: Some(ports[0].name.clone()), ipv4, proxy_protocol: Some(ProxyProtocol::V2) };
        let health = health.map(|h| Health { port: Some(ports[0].name.clone()), ..h });
        Spec {
            id: None,
            image: Some(format!("registry.local/web:{tag}")),
            command,
            args: None,
            env: env.map(|e: BTreeMap<String, String>| e),
            resources: Some(Resources { cpu: cpu.map(Cpu), memory: memory_mib.map(|m| ByteSize(m << 20)) }),
            instances,
            regions,
            endpoints: Some(vec![endpoint]),
            ports: Some(ports),
            volumes: volume_gib.map(|g| vec![Volume { name: "data".into(), size: ByteSize(g << 30), mount: "/data".into() }]),
            secrets: Some(vec![SecretRef { name: "DB_URL".into(), path: "/run/secrets/db".into(), ..SecretRef::default() }]),
            health,
            rollout: Some(Rollout {
                strategy: Some(if immediate { s::Strategy::Immediate } else { s::Strategy::Rolling }),
                max_surge: Some(1),
                max_unavailable: Some(0),
                progress_deadline: None,
            }),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_valid_spec_survives_write_then_load(spec in spec()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mut files = valid_files();
        files.retain(|(p, _)| !p.starts_with("orgs/acme/shop/web/"));
        for (path, content) in &files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, content).expect("write");
        }
        let state = load(&snapshot(&files)).state;
        let created = vt_repo::write::create_app(root, &state, "web", None, spec.clone()).expect("create");
        vt_repo::write::create_env(root, &load(&Snapshot::from_dir(root).expect("read")).state, "prod", None, Spec::default()).expect("env");
        // The app references secret DB_URL: the env's secrets file has it.
        let key = vt_repo::secrets::crypto::NewKey::generate();
        let mut secrets = vt_repo::secrets::SecretsFile::default();
        let value = vt_repo::secrets::SecretValue::new(b"postgres://".to_vec());
        vt_repo::secrets::edit::set(&mut secrets, "DB_URL", &value, &[key.recipient], &Default::default()).expect("seal");
        let text = vt_repo::secrets::edit::to_text(&secrets, "acme/shop/web/prod");
        vt_repo::secrets::edit::write_file(root, "orgs/acme/shop/web/envs/prod.secrets.yaml", &text).expect("write secrets");

        let loaded = load(&Snapshot::from_dir(root).expect("read"));
        prop_assert_eq!(&loaded.diagnostics, &vec![]);
        let app = &loaded.state.apps[0];
        prop_assert_eq!(&app.spec, &Spec { id: Some(created.id), ..spec });
        prop_assert!(loaded.state.envs[0].effective.is_some());
    }
}
