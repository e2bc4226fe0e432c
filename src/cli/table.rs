//! The `tasks list` table: one line a task, widths fitted to the content, every value escaped.

use serde_json::Value;

use crate::terminal::clean;

const COLUMNS: [&str; 8] = [
    "ID", "QUEUE", "STATE", "PRIO", "APP", "WORKER", "AGE", "TITLE",
];

fn age(created: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    let Some(t) = created
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    else {
        return "-".into();
    };
    let secs = (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => clean(s),
        Value::Null => "-".into(),
        other => clean(&other.to_string()),
    }
}

/// Renders `{"tasks": [...]}` (or a bare array) as a table. Pure but for `now`.
pub(crate) fn render(doc: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    let tasks = doc["tasks"]
        .as_array()
        .or_else(|| doc.as_array())
        .cloned()
        .unwrap_or_default();
    if tasks.is_empty() {
        return "no tasks\n".into();
    }
    let rows: Vec<[String; 8]> = tasks
        .iter()
        .map(|t| {
            [
                cell(&t["id"]),
                cell(&t["queue"]),
                cell(&t["state"]),
                cell(&t["priority"]),
                cell(&t["app"]),
                cell(&t["worker"]),
                age(&t["created_at"], now),
                cell(&t["title"]),
            ]
        })
        .collect();
    let mut widths = COLUMNS.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&COLUMNS.map(String::from));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_with_escaped_cells() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let doc = json!({"tasks": [
            {"id": "t1", "queue": "execution", "state": "claimed", "priority": 1, "app": "api",
             "worker": "agent-7", "created_at": "2026-11-28T09:58:30Z", "title": "FIX: Deployment error in api"},
            {"id": "t2", "queue": "announce", "state": "queued", "priority": 4, "app": null,
             "worker": null, "created_at": "2026-11-25T10:00:00Z", "title": "evil\u{1b}[2J\nFAKE"},
        ]});
        let text = render(&doc, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ID"));
        assert!(
            lines[1].contains("agent-7") && lines[1].contains("90s"),
            "{text}"
        );
        assert!(
            lines[2].contains("3d") && lines[2].ends_with("evil\\e[2J\\nFAKE"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'));
        assert_eq!(render(&json!({"tasks": []}), now), "no tasks\n");
    }
}
