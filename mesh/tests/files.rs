//! The packaged binary keeps its files private: `referral-mesh serve` on a data dir that
//! exists with mode 0755 leaves it 0700 with every file in it 0600 (databases, WAL and SHM,
//! the generated JWT secret, the admin token), and with stdout not a terminal it prints
//! where the admin token is, never the token.

#![cfg(unix)]

use std::{os::unix::fs::PermissionsExt, path::Path, process::Stdio, time::Duration};

use tokio::process::Command;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn serve_keeps_the_data_dir_and_its_files_private_and_the_token_out_of_the_output() {
    let root = std::env::temp_dir().join(format!("mesh-files-{}", uuid::Uuid::new_v4()));
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = root.join("stdout.log");
    let err = root.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_referral-mesh"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--grpc-ports", "auto"])
        .env_remove("JWT_SECRET")
        .env_remove("REDIS_URL")
        .env_remove("MESH_DATA_DIR")
        .env_remove("MESH_LISTEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut banner = String::new();
    for _ in 0..600 {
        // Not written yet: empty until the mesh prints.
        banner = std::fs::read_to_string(&out).unwrap_or_default();
        if banner.contains("admin token") {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "referral-mesh exited with {status}:\n{banner}\n{}",
                // Only for the failure message: whatever it wrote, if anything.
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the services write (migrations ran before the banner; WAL files exist by now).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let token_file = data.join("admin-token");
    let token = std::fs::read_to_string(&token_file).expect("admin-token written");
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert!(
        banner.contains(&format!("in {}", token_file.display())),
        "the banner says where the token is:\n{banner}"
    );
    let log = std::fs::read_to_string(&err).expect("the mesh's stderr");
    assert!(!banner.contains(token), "the token is printed to a non-terminal");
    assert!(!log.contains(token), "the token is in the log");
    let secret = std::fs::read_to_string(data.join("jwt-secret")).unwrap();
    assert!(!banner.contains(secret.trim()) && !log.contains(secret.trim()));

    assert_eq!(mode(&data), 0o700, "data dir");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{name} is {:o}", mode(&path));
        seen.push(name);
    }
    for name in [
        "invite.db",
        "invite.db-wal",
        "invite.db-shm",
        "analytics.db",
        "jwt-secret",
        "admin-token",
    ] {
        assert!(seen.iter().any(|s| s == name), "{name} missing from {seen:?}");
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&root);
}
