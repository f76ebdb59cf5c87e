//! Line and column of every value in a YAML or JSON text, by JSON pointer,
//! so that diagnostics can point into the source.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::diagnostics::child_pointer;

/// Where each value of one text starts.
pub struct Positions {
    starts: HashMap<String, (usize, usize)>,
}

impl Positions {
    /// Reads the positions of `text`; JSON is read as the YAML it also is.
    pub fn of(text: &str) -> Self {
        let mut builder = Builder {
            frames: Vec::new(),
            starts: HashMap::new(),
        };
        // A text that does not parse has its syntax error reported already, and
        // the positions found before the error still serve.
        let _ = Parser::new_from_str(text).load(&mut builder, false);
        Self {
            starts: builder.starts,
        }
    }

    /// Line and column (both from 1) of the value at `pointer`, or of its
    /// nearest ancestor that the text holds.
    pub fn locate(&self, pointer: &str) -> Option<(usize, usize)> {
        let mut current = pointer;
        loop {
            if let Some(found) = self.starts.get(current) {
                return Some(*found);
            }
            let (parent, _) = current.rsplit_once('/')?;
            current = parent;
        }
    }
}

enum Frame {
    Mapping {
        pointer: String,
        key: Option<String>,
    },
    Sequence {
        pointer: String,
        next: usize,
    },
}

struct Builder {
    frames: Vec<Frame>,
    starts: HashMap<String, (usize, usize)>,
}

impl Builder {
    /// The pointer of the node that starts now, or `None` when it is a key.
    fn node_pointer(&mut self, event: &Event) -> Option<String> {
        match self.frames.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { pointer, next }) => {
                let at = format!("{pointer}/{next}");
                *next += 1;
                Some(at)
            }
            Some(Frame::Mapping { pointer, key }) => match key.take() {
                Some(name) => Some(child_pointer(pointer, &name)),
                None => {
                    // Only scalar keys name a value; other keys are skipped.
                    let name = match event {
                        Event::Scalar(text, ..) => text.clone(),
                        _ => String::new(),
                    };
                    *key = Some(name);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
            }
            Event::Scalar(..)
            | Event::Alias(_)
            | Event::MappingStart(..)
            | Event::SequenceStart(..) => {
                let Some(pointer) = self.node_pointer(&event) else {
                    return;
                };
                self.starts
                    .entry(pointer.clone())
                    .or_insert((mark.line(), mark.col() + 1));
                match event {
                    Event::MappingStart(..) => {
                        self.frames.push(Frame::Mapping { pointer, key: None })
                    }
                    Event::SequenceStart(..) => {
                        self.frames.push(Frame::Sequence { pointer, next: 0 })
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}
