//! Opening stores: locations, files, and what a user sees when a location is wrong.

use crate::common;

use common::{run, Backend, Db};
use shopfloor_store::testing::TestPostgres;
use shopfloor_store::{open, StoreError};
use sqlx::{Connection, PgConnection};

// ---- SQLite ----

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let db = Db::sqlite().await;
    let Backend::Sqlite { path, .. } = &db.backend else {
        unreachable!()
    };
    assert!(path.is_file());
    assert_eq!(db.texts("PRAGMA journal_mode").await, ["wal"]);
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_folder_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".shopfloor/shopfloor.db");
    let store = open(path.to_str().unwrap()).await.unwrap();
    let r = run("p", "triage", 1, None);
    store.insert_runs(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = path.with_extension("db-wal");
    assert_eq!(mode(&wal), 0o600, "the write-ahead log holds the same rows");
    drop(store);

    // A file an earlier version left readable by everyone loses that when opened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(mode(&path), 0o640);
    drop(store);
}

#[tokio::test]
async fn plain_path_and_memory_locations_open_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let store = open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(path.is_file());

    let memory = open("sqlite::memory:").await.unwrap();
    let r = run("m", "triage", 1, Some(("b", 1)));
    memory.insert_runs(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(memory.get_run("m").await.unwrap(), Some(r));
}

#[tokio::test]
async fn bad_sqlite_locations_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().to_str().unwrap().to_owned();
    let err = open(&folder)
        .await
        .err()
        .expect("a folder is not a database")
        .to_string();
    assert!(err.contains(&folder) && err.contains("folder"), "{err}");

    let not_db = dir.path().join("notes.txt");
    std::fs::write(
        &not_db,
        "this is not a database, just some text that is long enough ....",
    )
    .unwrap();
    let err = open(not_db.to_str().unwrap())
        .await
        .err()
        .expect("a text file is not a database");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.txt"), "{err}");

    let blocked = dir.path().join("file-not-folder");
    std::fs::write(&blocked, "x").unwrap();
    let err = open(blocked.join("sub/db.sqlite").to_str().unwrap())
        .await
        .err()
        .expect("no folder");
    assert!(
        err.to_string().contains("cannot create the folder"),
        "{err}"
    );

    let err = open("mysql://root:hunter2@localhost/shop")
        .await
        .err()
        .expect("unsupported")
        .to_string();
    assert!(err.contains("mysql") && !err.contains("hunter2"), "{err}");
}

// ---- PostgreSQL ----

#[tokio::test]
async fn unreachable_postgres_names_the_location_but_not_the_password() {
    let started = std::time::Instant::now();
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = open("postgres://shop:hunter2@127.0.0.1:1/shop")
        .await
        .err()
        .expect("no server");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("postgres://shop:***@127.0.0.1:1/shop"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("check that PostgreSQL is running"), "{text}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    let err = open("postgres://shop@127.0.0.1:notaport/shop")
        .await
        .err()
        .expect("bad URL")
        .to_string();
    assert!(err.contains("not a valid PostgreSQL URL"), "{err}");
}

#[tokio::test]
async fn postgres_test_databases_are_dropped() {
    let name = {
        let db = TestPostgres::create().await;
        open(db.url()).await.unwrap().ping().await.unwrap();
        db.name().to_owned()
    };
    let server = std::env::var(shopfloor_store::testing::POSTGRES_URL_ENV)
        .unwrap_or_else(|_| shopfloor_store::testing::DEFAULT_POSTGRES_URL.to_owned());
    let mut conn = PgConnection::connect(&server).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "test database {name} was left behind");
}
