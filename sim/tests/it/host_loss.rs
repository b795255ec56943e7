//! Host loss: a silent host is lost after `lost_after`; its stateless
//! instances move, an instance with a volume waits for it and says so;
//! when it comes back, the duplicates stop.

use crate::{healthy, on_hosts, seeds, settled, sim_with_hosts};
use vt_plan::events::kind;
use vt_plan::{HostStatus, InstanceId, Phase};
use vt_sim::{Repo, Sim};

fn host_status(sim: &Sim, host: &str) -> Option<HostStatus> {
    sim.controller()
        .hosts()
        .into_iter()
        .find(|h| h.host.name == host)
        .map(|h| h.host.status)
}

#[test]
fn a_partitioned_host_is_lost_its_stateless_instances_move_and_volumes_wait() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 3);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(3);
        repo.app("db").volume("data", "1Gi");
        let (web, db) = (repo.key("web", "prod"), repo.key("db", "prod"));
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &web, 1, 3) && settled(s, &db, 1, 1), 30_000);

        let (db_host, db_instance) = {
            let on = sim.on_hosts(&db);
            (on[0].0.to_string(), on[0].1.id.clone())
        };
        let web_on_lost: Vec<InstanceId> = sim
            .on_hosts(&web)
            .iter()
            .filter(|(h, _)| *h == db_host)
            .map(|(_, i)| i.id.clone())
            .collect();
        assert_eq!(
            web_on_lost.len(),
            1,
            "seed {seed}: one web instance per host"
        );
        let placed_before = sim.events_of(kind::INSTANCE_PLACED).len();
        let last_seen = sim.now();
        sim.partition(&db_host);

        sim.run_until(
            |s| host_status(s, &db_host) == Some(HostStatus::Lost),
            20_000,
        );
        let lost = sim.events_of(kind::HOST_LOST);
        assert_eq!(lost.len(), 1, "seed {seed}");
        assert!(
            lost[0].time - last_seen > sim.config().controller.lost_after,
            "seed {seed}: lost only after lost_after"
        );

        // The web instance is replaced on another host; the db instance is not moved.
        let moved = |s: &Sim| {
            let ready: Vec<_> = s
                .controller()
                .instances()
                .into_iter()
                .filter(|i| {
                    i.instance.key == web
                        && i.instance.phase == Phase::Healthy
                        && i.instance.host != db_host
                })
                .collect();
            ready.len() == 3
        };
        sim.run_until(moved, 20_000);
        let placed: Vec<_> = sim.events_of(kind::INSTANCE_PLACED)[placed_before..].to_vec();
        assert_eq!(
            placed.len(),
            1,
            "seed {seed}: only the web instance is replaced"
        );
        assert!(
            placed[0]
                .app
                .as_deref()
                .is_some_and(|a| a.ends_with("/web"))
                && placed[0].host.as_deref() != Some(&db_host),
            "seed {seed}"
        );
        let pending = sim.controller().pending(&db);
        assert!(
            pending.iter().any(|p| p.reason.contains(&format!(
                "the volumes of slot 0 live on lost host {db_host}: waiting for it to come back"
            ))),
            "seed {seed}: {pending:?}"
        );
        assert!(
            !sim.events_of(kind::INSTANCE_WAITING).is_empty(),
            "seed {seed}"
        );
        let host = sim.host(&db_host).expect("host");
        assert!(
            host.instance(&db_instance)
                .is_some_and(|i| i.phase == Phase::Healthy),
            "seed {seed}: the partitioned host keeps running it"
        );

        // Back: it registers again, its web duplicate stops, the db instance stays.
        sim.heal(&db_host);
        sim.run_until(|s| settled(s, &web, 1, 3) && settled(s, &db, 1, 1), 20_000);
        assert_eq!(
            host_status(&sim, &db_host),
            Some(HostStatus::Ready),
            "seed {seed}"
        );
        assert!(
            sim.host(&db_host)
                .is_some_and(|h| h.instance(&web_on_lost[0]).is_none()),
            "seed {seed}: duplicate stopped"
        );
        assert_eq!(
            sim.on_hosts(&db)[0].1.id,
            db_instance,
            "seed {seed}: the same db instance"
        );
        assert!(sim.controller().pending(&db).is_empty(), "seed {seed}");
        assert_eq!(
            sim.events_of(kind::INSTANCE_PLACED).len(),
            placed_before + 1,
            "seed {seed}"
        );
    }
}

#[test]
fn a_crashed_host_comes_back_empty_and_its_volume_slot_restarts_there() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 2);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(2);
        repo.app("db").volume("data", "1Gi");
        let (web, db) = (repo.key("web", "prod"), repo.key("db", "prod"));
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &web, 1, 2) && settled(s, &db, 1, 1), 30_000);
        let db_host = sim.on_hosts(&db)[0].0.to_string();
        let db_instance = sim.on_hosts(&db)[0].1.id.clone();

        sim.crash(&db_host);
        sim.run_until(
            |s| host_status(s, &db_host) == Some(HostStatus::Lost),
            20_000,
        );
        // Its web instance is replaced; the lost one stays `Stopping` until the host reports.
        sim.run_until(
            |s| healthy(s, &web) == 2 && on_hosts(s, &web) == (2, 2),
            20_000,
        );
        assert!(
            sim.on_hosts(&web).iter().all(|(h, _)| *h != db_host),
            "seed {seed}"
        );
        assert!(
            sim.on_hosts(&db).is_empty(),
            "seed {seed}: the db waits for its host"
        );

        sim.restart(&db_host);
        sim.run_until(|s| settled(s, &db, 1, 1), 20_000);
        let (host, instance) = sim.on_hosts(&db)[0];
        assert_eq!(
            host, db_host,
            "seed {seed}: the slot stays with its volumes"
        );
        assert_ne!(instance.id, db_instance, "seed {seed}: a new instance");
    }
}
