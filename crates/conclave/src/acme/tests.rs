use super::*;

#[test]
fn challenges_answer_only_open_tokens_and_are_bounded() {
    let c = Challenges::default();
    assert!(c.offer("tok".into(), "tok.thumb".into()));
    assert_eq!(c.answer("tok").as_deref(), Some("tok.thumb"));
    assert_eq!(c.answer("other"), None);
    {
        let _offered = Offered {
            challenges: &c,
            tokens: vec!["tok".into()],
        };
    }
    assert_eq!(c.answer("tok"), None);
    for i in 0..MAX_CHALLENGES {
        assert!(c.offer(format!("t{i}"), String::new()));
    }
    assert!(!c.offer("one more".into(), String::new()));
}

#[cfg(unix)]
#[test]
fn the_acme_directory_is_the_owners_only_even_if_it_existed() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("acme");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    create_private_dir(&dir).expect("create");
    let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn log_times_are_rfc_3339_utc() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert_eq!(when(t), "2027-01-15T08:00:00Z");
}

#[test]
fn a_private_file_is_replaced_whole_with_mode_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("key.pem");
    write_private(&path, b"one", "private key").expect("write");
    write_private(&path, b"two", "private key").expect("rewrite");
    assert_eq!(std::fs::read(&path).expect("read"), b"two");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!path.with_extension("tmp").exists());
}
