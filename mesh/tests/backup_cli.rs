//! The packaged binary's `backup` and `restore`: a backup of a running `referral-mesh serve`
//! from another process, a restore refused onto the running mesh's data dir (its lock is
//! held by the other process) and into a non-empty dir, and accepted into a new one.

#![cfg(unix)]

use std::{path::Path, process::Stdio, time::Duration};

use tokio::process::Command;

fn mesh() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_referral-mesh"));
    for var in [
        "JWT_SECRET",
        "SERVICE_JWT_SECRET",
        "PII_KEYS",
        "PII_LOOKUP_KEY",
        "CLICK_SIGNING_KEYS",
        "REDIS_URL",
        "MESH_DATA_DIR",
        "MESH_LISTEN",
    ] {
        c.env_remove(var);
    }
    c
}

async fn run(args: &[&str], dirs: &[&Path]) -> (bool, String) {
    let mut c = mesh();
    c.args(args);
    for d in dirs {
        c.arg(d);
    }
    let out = c.output().await.expect("runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn backup_beside_a_running_mesh_and_restore_only_where_none_runs() {
    let root = std::env::temp_dir().join(format!("mesh-backup-cli-{}", uuid::Uuid::new_v4()));
    let data = root.join("data");
    let out = root.join("stdout.log");
    std::fs::create_dir_all(&root).unwrap();
    let mut child = mesh()
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--grpc-ports", "auto"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("admin token")
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("referral-mesh exited with {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let backup = root.join("backup");
    let (ok, said) = run(&["backup", "--data-dir"], &[&data]).await;
    assert!(!ok && said.contains("--to"), "--to is required: {said}");
    let mut c = mesh();
    c.arg("backup")
        .arg("--data-dir")
        .arg(&data)
        .arg("--to")
        .arg(&backup);
    let o = c.output().await.unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("invite") && said.contains("event log head"),
        "{said}"
    );
    assert!(backup.join("manifest.json").is_file());

    // Onto the running mesh's data dir: refused, even forced, naming the lock.
    let mut c = mesh();
    c.arg("restore")
        .arg("--from")
        .arg(&backup)
        .arg("--data-dir")
        .arg(&data)
        .arg("--force");
    let o = c.output().await.unwrap();
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(
        said.contains("in use by a running referral-mesh") && said.contains("mesh.lock"),
        "{said}"
    );

    // Into a new dir: restored.
    let restored = root.join("restored");
    let mut c = mesh();
    c.arg("restore")
        .arg("--from")
        .arg(&backup)
        .arg("--data-dir")
        .arg(&restored);
    let o = c.output().await.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("restored the backup"));
    // Again into the same, now non-empty, dir: refused.
    let o = c.output().await.unwrap();
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && said.contains("is not empty") && said.contains("--force"),
        "{said}"
    );

    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&root);
}
