//! The schema migrations, embedded in the binary.
//!
//! Built at first use from `include_str!` instead of `sqlx::migrate!`: the macro needs sqlx's
//! `macros` feature, which compiles sqlx and every driver (SQLite's C source included) a second
//! time for the proc-macro, about a third of a fresh release build. The checksum is the same
//! SHA-384 of the file the macro takes, so databases migrated by earlier builds validate as before.
//!
//! Architecture Invariant: a migration file is never edited once released; add the next number.

use std::borrow::Cow;
use std::sync::LazyLock;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// `(version, description, sql)` as the file name `NNNN_description.sql` and its text give them.
type Files = &'static [(i64, &'static str, &'static str)];

const SQLITE: Files = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "write probe",
        include_str!("../../migrations/sqlite/0002_write_probe.sql"),
    ),
    (
        3,
        "lease generation and snapshots",
        include_str!("../../migrations/sqlite/0003_lease_generation_and_snapshots.sql"),
    ),
    (
        4,
        "deployment verifications",
        include_str!("../../migrations/sqlite/0004_deployment_verifications.sql"),
    ),
    (
        5,
        "claim order index",
        include_str!("../../migrations/sqlite/0005_claim_order_index.sql"),
    ),
];

const POSTGRES: Files = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "write probe",
        include_str!("../../migrations/postgres/0002_write_probe.sql"),
    ),
    (
        3,
        "lease generation and snapshots",
        include_str!("../../migrations/postgres/0003_lease_generation_and_snapshots.sql"),
    ),
    (
        4,
        "deployment verifications",
        include_str!("../../migrations/postgres/0004_deployment_verifications.sql"),
    ),
    (
        5,
        "claim order index",
        include_str!("../../migrations/postgres/0005_claim_order_index.sql"),
    ),
];

fn migrator(files: Files) -> Migrator {
    let migrations: Vec<Migration> = files
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                AssertSqlSafe(sql).into_sql_str(),
                // sqlx's `-- no-transaction` directive; none of ours needs it.
                sql.trim_start().starts_with("-- no-transaction"),
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

pub(super) static SQLITE_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| migrator(SQLITE));
pub(super) static POSTGRES_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| migrator(POSTGRES));

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in `migrations/<backend>/` is embedded, in order, under its file name's number
    /// and description: a new file that is not added here fails this test.
    #[test]
    fn every_migration_file_is_embedded() {
        for (dir, files) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut on_disk: Vec<(i64, String, String)> = std::fs::read_dir(&path)
                .expect("migrations dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .map(|p| {
                    let name = p.file_stem().expect("stem").to_string_lossy().into_owned();
                    let (v, d) = name.split_once('_').expect("NNNN_description");
                    let sql = std::fs::read_to_string(&p).expect("read");
                    (v.parse().expect("number"), d.replace('_', " "), sql)
                })
                .collect();
            on_disk.sort();
            let embedded: Vec<(i64, String, String)> = files
                .iter()
                .map(|&(v, d, s)| (v, d.to_string(), s.to_string()))
                .collect();
            assert_eq!(
                embedded, on_disk,
                "{dir}: embedded migrations differ from the files"
            );
        }
    }

    /// The checksum sqlx stores is the SHA-384 of the file: the same value `sqlx::migrate!` gave.
    #[test]
    fn checksums_are_sha384_of_the_files() {
        use sha2::{Digest, Sha384};
        for (m, &(_, _, sql)) in SQLITE_MIGRATIONS.iter().zip(SQLITE) {
            assert_eq!(&m.checksum[..], &Sha384::digest(sql.as_bytes())[..]);
        }
        assert_eq!(SQLITE_MIGRATIONS.iter().count(), SQLITE.len());
        assert_eq!(POSTGRES_MIGRATIONS.iter().count(), POSTGRES.len());
    }
}
