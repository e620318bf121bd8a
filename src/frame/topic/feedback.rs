//! Whether records can come back as frames: a record published on a topic one of mqimg's own filters
//! matches is received as a frame, fails (it holds no image), and its failure record may come back in
//! turn, without end. Decided for every topic the filters match, not for one sample topic.
//!
//! A loop exists when some topic `t` matching a filter `Fi` renders to a record topic matching a filter
//! `Fj`. The search builds the record topic level by level from pieces: the template's text, the
//! literal levels of `Fi`, one unknown per wildcard level of `t`, and, for topics too deep or too long,
//! the opaque folded level [`render`] writes. Each literal level of `Fj` then fixes what the unknowns
//! facing it must be (every way of cutting the literal between them is tried); `+` and `#` fix
//! nothing. Every candidate is then checked for real, with [`render`] and [`matches`], so a loop is
//! only ever reported with a topic that shows it.
//!
//! Why the finite search is enough: an unknown facing no literal can be any short level (`x` is tried,
//! then the empty level); under a `#`, topics deeper than `Fj` add levels that only a `#` of `Fj` can
//! face, so depths up to two more than `Fj`'s cover every case; and a folded topic has one of two
//! forms (first levels kept, or folded whole), each tried once. The one case left out: a filter whose
//! literal level spells a folded level's hash, which would take writing the hash of a topic into the
//! config.

use std::fmt;

use super::render::{MAX_BYTES, escape_level, kept_levels, render, unescape_level};
use super::{matches, unshared};

const PLACEHOLDER: &str = "{topic}";

/// A frame topic whose record comes back as a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feedback {
    /// A topic the frame filter matches.
    pub frame_topic: String,
    /// The subscription filter that takes the frame.
    pub frame_filter: String,
    /// Where the frame's record is published.
    pub record_topic: String,
    /// The subscription filter that takes the record back.
    pub record_filter: String,
}

impl fmt::Display for Feedback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a frame on {}", shown(&self.frame_topic))?;
        if self.frame_filter != self.record_filter {
            write!(f, " (taken by {:?})", self.frame_filter)?;
        }
        write!(
            f,
            " gives a record on {}, which {:?} matches",
            shown(&self.record_topic),
            self.record_filter
        )
    }
}

/// A topic quoted whole when short, else its start with its size.
fn shown(topic: &str) -> String {
    const SHOWN_BYTES: usize = 80;
    if topic.len() <= SHOWN_BYTES {
        return format!("{topic:?}");
    }
    let mut cut = SHOWN_BYTES;
    while !topic.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{:?}… ({} levels, {} bytes)",
        &topic[..cut],
        topic.matches('/').count() + 1,
        topic.len()
    )
}

/// A frame topic that `template` turns into a record topic one of `filters` matches, if any. The
/// template must pass [`super::validate_template`] and the filters [`super::validate_filter`].
pub fn feedback(template: &str, filters: &[&str]) -> Option<Feedback> {
    feedback_between(template, filters, filters)
}

/// Like [`feedback`], when frames are on other topics than the messages the filters take: a chunked
/// frame's topic is its parts' topic without their last levels. `frame_filters` match every frame
/// topic; `filters` are the subscriptions.
pub fn feedback_between(
    template: &str,
    frame_filters: &[&str],
    filters: &[&str],
) -> Option<Feedback> {
    if template.is_empty() {
        return None;
    }
    frame_filters.iter().find_map(|frame_filter| {
        filters
            .iter()
            .find_map(|record_filter| between(template, frame_filter, record_filter))
    })
}

/// A frame topic `frame_filter` matches whose record topic `record_filter` matches, if any.
fn between(template: &str, frame_filter: &str, record_filter: &str) -> Option<Feedback> {
    let pieces: Vec<&str> = template.split(PLACEHOLDER).collect();
    let search = Search {
        template,
        pieces: &pieces,
        source: &Source::new(frame_filter),
        record_filter,
    };
    search.run()
}

/// A frame topic that `template` turns into a record topic starting with `$`, which brokers reserve
/// (`$SYS/…`) and silently drop records on: with a template starting with `{topic}` and a filter
/// whose first level starts with `$`. Returns the frame topic and its record topic.
pub fn reserved_record(template: &str, filters: &[&str]) -> Option<(String, String)> {
    filters.iter().find_map(|filter| {
        let source = Source::new(filter);
        let topic = source.topic(source.min_levels, &[], "x", None);
        let record = render(template, &topic)?;
        record.starts_with('$').then_some((topic, record))
    })
}

/// The topics one filter matches, level by level.
struct Source<'a> {
    filter: &'a str,
    /// The filter's levels before a final `#`.
    levels: Vec<&'a str>,
    /// Whether it ends with `#`, which matches any number of levels, none included.
    open: bool,
    /// The fewest levels of a matching topic.
    min_levels: usize,
}

/// One level of a frame topic.
#[derive(Clone, Copy)]
enum Level<'a> {
    /// A literal level of the filter.
    Literal(&'a str),
    /// A level under `+` or `#`: anything.
    Any,
}

impl<'a> Source<'a> {
    fn new(filter: &'a str) -> Self {
        let mut levels: Vec<&str> = unshared(filter).split('/').collect();
        let open = levels.last() == Some(&"#");
        if open {
            levels.pop();
        }
        Self {
            filter,
            min_levels: levels.len().max(1),
            levels,
            open,
        }
    }

    /// Whether topics this filter matches can have `depth` levels.
    fn allows(&self, depth: usize) -> bool {
        depth >= self.min_levels && (self.open || depth == self.levels.len())
    }

    /// The shape of a matching topic with `depth` levels.
    fn shape(&self, depth: usize) -> Vec<Level<'a>> {
        (0..depth)
            .map(|i| match self.levels.get(i) {
                Some(&"+") | None => Level::Any,
                Some(literal) => Level::Literal(literal),
            })
            .collect()
    }

    /// A matching topic with `depth` levels: the wildcard levels take their escaped value from
    /// `values` (by level), else `default`; level `huge`, if any, is made longer than any record topic.
    fn topic(
        &self,
        depth: usize,
        values: &[Option<String>],
        default: &str,
        huge: Option<usize>,
    ) -> String {
        let levels: Vec<String> = self
            .shape(depth)
            .iter()
            .enumerate()
            .map(|(i, level)| match level {
                _ if huge == Some(i) => "x".repeat(MAX_BYTES + 1),
                Level::Literal(literal) => (*literal).to_owned(),
                Level::Any => values
                    .get(i)
                    .and_then(Option::as_deref)
                    .and_then(unescape_level)
                    .unwrap_or_else(|| default.to_owned()),
            })
            .collect();
        levels.join("/")
    }
}

/// A piece of a record topic level.
#[derive(Clone, Debug)]
enum Atom {
    /// Known text: the template's, or an escaped literal level of the frame filter.
    Text(String),
    /// The escaped value of the frame topic's wildcard level with this index.
    Unknown(usize),
    /// A folded level: a hash, never equal to a literal level of a filter.
    Folded,
}

/// How the frame topic appears in its record topic.
enum Form {
    /// Every level, escaped: topics within the bounds.
    Whole,
    /// The first levels, then one folded level: topics with too many levels.
    Kept(usize),
    /// One folded level: topics with too many bytes.
    Folded,
}

/// The search for a loop from one frame filter to one record filter.
struct Search<'a> {
    template: &'a str,
    pieces: &'a [&'a str],
    source: &'a Source<'a>,
    record_filter: &'a str,
}

impl Search<'_> {
    fn run(&self) -> Option<Feedback> {
        let target: Vec<&str> = unshared(self.record_filter).split('/').collect();
        let source = self.source;
        let kept = kept_levels(self.pieces);
        if self.pieces.len() == 1 {
            // Without `{topic}` the record topic is the same for every frame.
            return self.try_form(&target, source.min_levels, &Form::Whole, None);
        }
        // Deeper topics only add levels that a final `#` of the target takes whatever they are.
        let deepest = if source.open {
            source.min_levels.max(target.len() + 2)
        } else {
            source.min_levels
        };
        let deepest = deepest.min(kept.map_or(0, |kept| kept + 1));
        // A topic one level below an open filter's prefix reads better as an example than the prefix
        // itself ("cameras/x" rather than "cameras"), which `#` also matches: that one goes last.
        let parent = source.open.then_some(source.levels.len());
        let depths = (source.min_levels..=deepest)
            .filter(|depth| Some(*depth) != parent)
            .chain(parent.filter(|depth| *depth >= source.min_levels && *depth <= deepest));
        for depth in depths {
            if let Some(found) = self.try_form(&target, depth, &Form::Whole, None) {
                return Some(found);
            }
        }
        if let Some(kept) = kept {
            let depth = source.min_levels.max(kept + 2);
            if source.allows(depth) {
                if let Some(found) = self.try_form(&target, depth, &Form::Kept(kept), None) {
                    return Some(found);
                }
            }
        }
        // Folded whole: a wildcard level too long for any record topic does it; without one, only a
        // literal filter that is itself too long, which the check below tries as it stands.
        let depth = if source.open {
            source.min_levels.max(source.levels.len() + 1)
        } else {
            source.min_levels
        };
        let huge = source
            .shape(depth)
            .iter()
            .position(|level| matches!(level, Level::Any));
        self.try_form(&target, depth, &Form::Folded, huge)
    }

    /// Looks for a frame topic of `depth` levels whose record, with the frame topic in `form`, matches
    /// `target` (the record filter's levels).
    fn try_form(
        &self,
        target: &[&str],
        depth: usize,
        form: &Form,
        huge: Option<usize>,
    ) -> Option<Feedback> {
        if !self.source.allows(depth) {
            return None;
        }
        let shape = self.source.shape(depth);
        let topic_atoms: Vec<Atom> = match form {
            Form::Whole => shape.iter().enumerate().map(atom).collect(),
            Form::Kept(kept) => shape
                .iter()
                .enumerate()
                .take(*kept)
                .map(atom)
                .chain([Atom::Folded])
                .collect(),
            Form::Folded => vec![Atom::Folded],
        };
        let record = record_levels(self.pieces, &topic_atoms);
        let open = target.last() == Some(&"#");
        let compared = if open { target.len() - 1 } else { target.len() };
        if record.len() < compared || (!open && record.len() != compared) {
            return None;
        }
        let constraints: Vec<(usize, &str)> = target[..compared]
            .iter()
            .enumerate()
            .filter(|(_, level)| **level != "+")
            .map(|(i, level)| (i, *level))
            .collect();
        let mut found = None;
        let mut check = |values: &[Option<String>]| {
            found = ["x", ""].iter().find_map(|default| {
                let topic = self.source.topic(depth, values, default, huge);
                self.verify(topic)
            });
            found.is_some()
        };
        let mut solver = Solver {
            record: &record,
            constraints: &constraints,
            values: vec![None; depth],
            found: &mut check,
        };
        solver.constraint(0);
        found
    }

    /// The loop `topic` shows, checked with the real rendering and matching.
    fn verify(&self, topic: String) -> Option<Feedback> {
        if !matches(self.source.filter, &topic) {
            return None;
        }
        let record = render(self.template, &topic)?;
        matches(self.record_filter, &record).then(|| Feedback {
            frame_topic: topic,
            frame_filter: self.source.filter.to_owned(),
            record_topic: record,
            record_filter: self.record_filter.to_owned(),
        })
    }
}

fn atom((i, level): (usize, &Level<'_>)) -> Atom {
    match level {
        Level::Literal(literal) => Atom::Text(escape_level(literal)),
        Level::Any => Atom::Unknown(i),
    }
}

/// The record topic's levels: the template's pieces with the frame topic's atoms between them.
fn record_levels(pieces: &[&str], topic: &[Atom]) -> Vec<Vec<Atom>> {
    let mut levels = Vec::new();
    let mut level = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            for (j, atom) in topic.iter().enumerate() {
                if j > 0 {
                    levels.push(std::mem::take(&mut level));
                }
                level.push(atom.clone());
            }
        }
        for (j, text) in piece.split('/').enumerate() {
            if j > 0 {
                levels.push(std::mem::take(&mut level));
            }
            if !text.is_empty() {
                level.push(Atom::Text(text.to_owned()));
            }
        }
    }
    levels.push(level);
    levels
}

/// Assigns the unknowns so that each constrained record level equals its literal, trying every way to
/// cut a literal between unknowns, and offers each full assignment to `found` until it accepts one.
struct Solver<'a> {
    record: &'a [Vec<Atom>],
    /// Record levels that must equal a literal level of the record filter.
    constraints: &'a [(usize, &'a str)],
    /// The escaped value of each unknown level of the frame topic, once fixed.
    values: Vec<Option<String>>,
    found: &'a mut dyn FnMut(&[Option<String>]) -> bool,
}

impl Solver<'_> {
    fn constraint(&mut self, index: usize) -> bool {
        match self.constraints.get(index) {
            None => (self.found)(&self.values),
            Some(&(level, literal)) => self.atoms(index, level, 0, literal),
        }
    }

    /// Matches the atoms of record level `level` from atom `at` against `rest` of its literal.
    fn atoms(&mut self, index: usize, level: usize, at: usize, rest: &str) -> bool {
        let record = self.record;
        let Some(atom) = record[level].get(at) else {
            return rest.is_empty() && self.constraint(index + 1);
        };
        match atom {
            Atom::Folded => false,
            Atom::Text(text) => rest
                .strip_prefix(text.as_str())
                .is_some_and(|rest| self.atoms(index, level, at + 1, rest)),
            Atom::Unknown(unknown) => {
                if let Some(value) = self.values[*unknown].clone() {
                    return rest
                        .strip_prefix(value.as_str())
                        .is_some_and(|rest| self.atoms(index, level, at + 1, rest));
                }
                for cut in (0..=rest.len()).filter(|cut| rest.is_char_boundary(*cut)) {
                    let (value, after) = rest.split_at(cut);
                    if unescape_level(value).is_none() {
                        continue;
                    }
                    self.values[*unknown] = Some(value.to_owned());
                    if self.atoms(index, level, at + 1, after) {
                        return true;
                    }
                }
                self.values[*unknown] = None;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
