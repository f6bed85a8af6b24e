//! A `POST /api/jobs` body: a job within the limits or a 400, never a panic;
//! as JSON and as plain text, the same answer whole and cut in two anywhere
//! (a large one is parsed as it arrives).
#![no_main]

use crowdfactor_server::{
    api::{parse_job, parse_text_job, AppError},
    store::{NewJob, Numbers},
    Config,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let limits = Config::default();
    let cut = body
        .first()
        .map_or(0, |&b| usize::from(b) % (body.len() + 1));
    let json = |pieces: &[&[u8]]| parse_job(pieces.iter().copied(), &limits);
    let text = |pieces: &[&[u8]]| parse_text_job(pieces.iter().copied(), &limits);
    same_in_two("JSON", json, body, cut, &limits);
    same_in_two("text", text, body, cut, &limits);
});

/// `parse` answers the same for `body` whole and cut in two at `cut`; a job
/// it takes is within the limits.
fn same_in_two(
    what: &str,
    parse: impl Fn(&[&[u8]]) -> Result<NewJob, AppError>,
    body: &[u8],
    cut: usize,
    limits: &Config,
) {
    let (a, b) = body.split_at(cut);
    let whole = parse(&[body]);
    let in_two = parse(&[a, b]);
    assert_eq!(
        format!("{whole:?}"),
        format!("{in_two:?}"),
        "{what} cut at {cut}"
    );
    if let Ok(job) = whole {
        check(&job, limits);
    }
}

/// A job the parser took: within the limits, not empty, its name clean.
fn check(job: &NewJob, limits: &Config) {
    let count = match &job.numbers {
        Numbers::List(list) => list.len() as u64,
        Numbers::Range { count, .. } => *count,
    };
    assert!(count >= 1, "an empty job was accepted");
    assert!(count <= limits.max_numbers_per_job, "{count} numbers");
    if let Some(name) = &job.name {
        assert!(!name.is_empty() && name.trim() == name, "{name:?}");
        assert!(name.chars().count() <= 100 && !name.chars().any(char::is_control));
    }
}
