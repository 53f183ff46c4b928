//! The probes' arguments, defined once for both sides: the host validates
//! every step of a case against this schema when it loads the case (so a
//! typo or an out-of-range number is refused before anything builds or
//! boots), and the guest's probe binary parses its arguments with it.
//!
//! Each probe's argument struct is declared with [`args_struct!`]: every
//! field with its type, default, bound and meaning in one place. The same
//! declaration gives the parser (unknown keys refused, each error naming
//! the field's path, e.g. `attempts[2].size`), the bounds check, and the
//! README's probe reference ([`reference_markdown`]). The probes themselves
//! are listed once, in [`probes!`](self::probes): [`PROBES`], [`parse`] and
//! [`ProbeArgs`] all come from that list.
//!
//! Parsing works on a `serde_json::Value` (what the plan carries) rather
//! than through serde's derive: serde's errors carry no path, and its
//! `default = "fn"` attribute cannot be generated from a default value.

use serde_json::{Map, Value};
use std::fmt;

/// What is wrong with a probe's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// Where, within the arguments: `pages`, `attempts[2].size`; empty for
    /// the arguments as a whole.
    pub field: String,
    /// What was expected, and what was found.
    pub expected: String,
}

impl ArgError {
    pub fn new(field: &str, expected: impl Into<String>) -> ArgError {
        ArgError {
            field: field.to_string(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.expected)
        } else {
            write!(f, "field `{}`: {}", self.field, self.expected)
        }
    }
}

impl std::error::Error for ArgError {}

/// The path of `name` within `at`.
pub fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// The path of item `i` of the list at `at`.
pub fn index(at: &str, i: usize) -> String {
    format!("{at}[{i}]")
}

/// A value as an error message shows what was found.
pub fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 40 => {
            let cut: String = s.chars().take(40).collect();
            format!("`{}`...", cut.escape_debug())
        }
        Value::String(s) => format!("`{}`", s.escape_debug()),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

/// A type that can be a probe argument (or part of one): parsed from the
/// plan's JSON with errors that name where, and named in the reference.
pub trait ArgValue: Sized {
    /// Parses `v`, found at the path `at`.
    fn from_arg(v: &Value, at: &str) -> Result<Self, ArgError>;
    /// The type, as the reference names it.
    fn type_name() -> String;
    /// The fields inside it, for the reference, with `at` as their path
    /// prefix: a struct's, or its items' for a list. None for plain values.
    fn nested(_at: &str) -> Vec<FieldDoc> {
        Vec::new()
    }
    /// Whether the bound must give a range: every number is bounded.
    const NUMBER: bool = false;
}

macro_rules! integer_args {
    ($($t:ty),*) => {$(
        impl ArgValue for $t {
            fn from_arg(v: &Value, at: &str) -> Result<Self, ArgError> {
                let n = v.as_u64().map(i128::from).or_else(|| v.as_i64().map(i128::from));
                n.and_then(|n| <$t>::try_from(n).ok()).ok_or_else(|| {
                    // Past the type's range: the field's bound, checked
                    // first, is narrower, so this is a type error.
                    ArgError::new(at, format!("expected an integer, got {}", show(v)))
                })
            }
            fn type_name() -> String {
                "integer".into()
            }
            const NUMBER: bool = true;
        }
    )*};
}
integer_args!(u8, u32, u64, usize, i32);

impl ArgValue for bool {
    fn from_arg(v: &Value, at: &str) -> Result<Self, ArgError> {
        v.as_bool()
            .ok_or_else(|| ArgError::new(at, format!("expected true or false, got {}", show(v))))
    }
    fn type_name() -> String {
        "bool".into()
    }
}

impl ArgValue for String {
    fn from_arg(v: &Value, at: &str) -> Result<Self, ArgError> {
        v.as_str()
            .map(String::from)
            .ok_or_else(|| ArgError::new(at, format!("expected a string, got {}", show(v))))
    }
    fn type_name() -> String {
        "string".into()
    }
}

impl<T: ArgValue> ArgValue for Vec<T> {
    fn from_arg(v: &Value, at: &str) -> Result<Self, ArgError> {
        let items = v
            .as_array()
            .ok_or_else(|| ArgError::new(at, format!("expected a list, got {}", show(v))))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_arg(item, &index(at, i)))
            .collect()
    }
    fn type_name() -> String {
        format!("list of {}", T::type_name())
    }
    fn nested(at: &str) -> Vec<FieldDoc> {
        T::nested(&format!("{at}[]"))
    }
}

/// An argument that may be left out, or given as null.
impl<T: ArgValue> ArgValue for Option<T> {
    fn from_arg(v: &Value, at: &str) -> Result<Self, ArgError> {
        match v {
            Value::Null => Ok(None),
            v => T::from_arg(v, at).map(Some),
        }
    }
    fn type_name() -> String {
        T::type_name()
    }
    fn nested(at: &str) -> Vec<FieldDoc> {
        T::nested(at)
    }
    const NUMBER: bool = T::NUMBER;
}

/// A check of a value beyond its type: the host refuses a value outside
/// it at load, the guest when it parses.
#[derive(Debug, Clone, Copy)]
pub struct Custom {
    pub check: fn(&Value) -> Result<(), String>,
    /// What it requires, for the reference.
    pub describe: &'static str,
}

/// The bounds of one argument, checked on its JSON value before it is
/// parsed (so that `-1` for a count says the range, not "expected u64").
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// An integer from .0 to .1, inclusive.
    range: Option<(i128, i128)>,
    multiple_of: Option<i128>,
    /// A list of .0 to .1 items.
    items: Option<(usize, usize)>,
    /// A string (or each string of a list) of at most this many bytes.
    bytes: Option<usize>,
    /// No item of a list twice.
    distinct: bool,
    custom: Option<Custom>,
}

impl Bound {
    /// No bound beyond the type (booleans, names of a fixed set).
    pub const NONE: Bound = Bound {
        range: None,
        multiple_of: None,
        items: None,
        bytes: None,
        distinct: false,
        custom: None,
    };

    pub const fn range(min: i128, max: i128) -> Bound {
        Bound {
            range: Some((min, max)),
            ..Bound::NONE
        }
    }

    pub const fn items(min: usize, max: usize) -> Bound {
        Bound {
            items: Some((min, max)),
            ..Bound::NONE
        }
    }

    pub const fn bytes(max: usize) -> Bound {
        Bound {
            bytes: Some(max),
            ..Bound::NONE
        }
    }

    pub const fn multiple_of(self, n: i128) -> Bound {
        Bound {
            multiple_of: Some(n),
            ..self
        }
    }

    pub const fn each_bytes(self, max: usize) -> Bound {
        Bound {
            bytes: Some(max),
            ..self
        }
    }

    pub const fn distinct(self) -> Bound {
        Bound {
            distinct: true,
            ..self
        }
    }

    pub const fn custom(
        self,
        check: fn(&Value) -> Result<(), String>,
        describe: &'static str,
    ) -> Bound {
        Bound {
            custom: Some(Custom { check, describe }),
            ..self
        }
    }

    /// Whether it bounds a number.
    pub fn is_range(&self) -> bool {
        self.range.is_some()
    }

    /// Checks `v` (at `at`). What is not of the bounded kind (a string
    /// where a number is bounded) is left to the type's parser to refuse.
    pub fn check(&self, v: &Value, at: &str) -> Result<(), ArgError> {
        if let (Some((min, max)), Value::Number(_)) = (self.range, v) {
            let n = v
                .as_u64()
                .map(i128::from)
                .or_else(|| v.as_i64().map(i128::from));
            match n {
                Some(n) if (min..=max).contains(&n) => {}
                _ => {
                    return Err(ArgError::new(
                        at,
                        format!("expected an integer from {min} to {max}, got {}", show(v)),
                    ))
                }
            }
            if let (Some(k), Some(n)) = (self.multiple_of, n) {
                if n % k != 0 {
                    return Err(ArgError::new(
                        at,
                        format!("expected a multiple of {k}, got {n}"),
                    ));
                }
            }
        }
        if let Value::Array(items) = v {
            if let Some((min, max)) = self.items {
                if !(min..=max).contains(&items.len()) {
                    return Err(ArgError::new(
                        at,
                        format!("expected {min} to {max} items, got {}", items.len()),
                    ));
                }
            }
            for (i, item) in items.iter().enumerate() {
                self.check_bytes(item, &index(at, i))?;
                if self.distinct {
                    if let Some(j) = items[..i].iter().position(|o| o == item) {
                        return Err(ArgError::new(
                            &index(at, i),
                            format!(
                                "{} is already item {j}; expected each at most once",
                                show(item)
                            ),
                        ));
                    }
                }
            }
        }
        self.check_bytes(v, at)?;
        if let Some(c) = self.custom {
            (c.check)(v).map_err(|e| ArgError::new(at, e))?;
        }
        Ok(())
    }

    fn check_bytes(&self, v: &Value, at: &str) -> Result<(), ArgError> {
        match (self.bytes, v) {
            (Some(max), Value::String(s)) if s.len() > max => Err(ArgError::new(
                at,
                format!("expected at most {max} bytes, got {}", s.len()),
            )),
            _ => Ok(()),
        }
    }

    /// The bound in words, for the reference.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((min, max)) = self.range {
            parts.push(format!("{min} to {max}"));
        }
        if let Some(k) = self.multiple_of {
            parts.push(format!("a multiple of {k}"));
        }
        if let Some((min, max)) = self.items {
            parts.push(format!("{min} to {max} items"));
        }
        match (self.bytes, self.items) {
            (Some(max), Some(_)) => parts.push(format!("each at most {max} bytes")),
            (Some(max), None) => parts.push(format!("at most {max} bytes")),
            _ => {}
        }
        if self.distinct {
            parts.push("no item twice".into());
        }
        if let Some(c) = self.custom {
            parts.push(c.describe.into());
        }
        if parts.is_empty() {
            // Its type is its bound: a boolean, one of a set of names.
            return "-".into();
        }
        parts.join("; ")
    }
}

/// One row of the probe reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDoc {
    /// Its path: `pages`, `attempts[].size`.
    pub name: String,
    pub type_name: String,
    /// The default as a case would write it; `None`: required.
    pub default: Option<String>,
    pub bound: String,
    pub doc: String,
    /// It is a number (each must have a range).
    pub number: bool,
    pub bounded: bool,
}

/// A default value as the reference shows it: the way a case writes it.
pub fn show_default(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(show_default)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        v => v.to_string(),
    }
}

/// The text of a field's doc comment lines, as one line.
pub fn doc_text(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses one field of an argument struct: checks its bound, parses it,
/// or takes its default when it is absent (`None`: it is required).
pub fn field<T: ArgValue>(
    map: &Map<String, Value>,
    at: &str,
    name: &str,
    bound: &Bound,
    default: Option<fn() -> T>,
) -> Result<T, ArgError> {
    let path = join(at, name);
    match map.get(name) {
        Some(v) => {
            bound.check(v, &path)?;
            T::from_arg(v, &path)
        }
        None => match default {
            Some(d) => Ok(d()),
            None => Err(ArgError::new(&path, "missing; this argument is required")),
        },
    }
}

/// The map of an argument struct, with no key it does not know.
pub fn known_map<'v>(
    v: &'v Value,
    at: &str,
    fields: &[&str],
) -> Result<&'v Map<String, Value>, ArgError> {
    let expected = if fields.is_empty() {
        "no arguments".to_string()
    } else {
        fields
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let map = v.as_object().ok_or_else(|| {
        ArgError::new(
            at,
            format!("expected a map of arguments ({expected}), got {}", show(v)),
        )
    })?;
    if let Some(key) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        let key_at = join(at, key);
        let want = if fields.is_empty() {
            "unknown argument; this probe takes no arguments".to_string()
        } else {
            format!("unknown argument; expected one of {expected}")
        };
        return Err(ArgError::new(&key_at, want));
    }
    Ok(map)
}

/// Declares an argument struct: each field with its doc comment (its
/// meaning in the reference), type, default (none: required) and bound.
///
/// ```ignore
/// args_struct! {
///     /// The probe's arguments.
///     pub struct Example {
///         /// How many pages.
///         pages: usize = 1, Bound::range(1, 64);
///         /// Required: no default.
///         size: u64, Bound::range(0, 1 << 30);
///     }
/// }
/// ```
#[macro_export]
macro_rules! args_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty $(= $default:expr)? , $bound:expr ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl $name {
            /// Its fields, by name, in order.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Its reference rows.
            pub fn reference() -> Vec<$crate::args::FieldDoc> {
                Self::field_docs("")
            }

            /// Its reference rows, with `at` as their path prefix.
            #[allow(unused_variables)]
            pub fn field_docs(at: &str) -> Vec<$crate::args::FieldDoc> {
                #[allow(unused_mut)]
                let mut docs = Vec::new();
                $(
                    let name = $crate::args::join(at, stringify!($field));
                    let bound: $crate::args::Bound = $bound;
                    let default: Option<fn() -> $ty> = $crate::args_default!($ty $(, $default)?);
                    docs.push($crate::args::FieldDoc {
                        name: name.clone(),
                        type_name: <$ty as $crate::args::ArgValue>::type_name(),
                        default: default.map(|d| {
                            $crate::args::show_default(
                                &serde_json::to_value(d()).expect("a default serializes"),
                            )
                        }),
                        bound: bound.describe(),
                        doc: $crate::args::doc_text(&[$($doc),*]),
                        number: <$ty as $crate::args::ArgValue>::NUMBER,
                        bounded: bound.is_range(),
                    });
                    docs.extend(<$ty as $crate::args::ArgValue>::nested(&name));
                )*
                docs
            }
        }

        impl $crate::args::ArgValue for $name {
            fn from_arg(
                v: &serde_json::Value,
                at: &str,
            ) -> Result<Self, $crate::args::ArgError> {
                #[allow(unused_variables)]
                let map = $crate::args::known_map(v, at, Self::FIELDS)?;
                Ok($name {
                    $(
                        $field: $crate::args::field::<$ty>(
                            map,
                            at,
                            stringify!($field),
                            &$bound,
                            $crate::args_default!($ty $(, $default)?),
                        )?,
                    )*
                })
            }
            fn type_name() -> String {
                "map (below)".into()
            }
            fn nested(at: &str) -> Vec<$crate::args::FieldDoc> {
                $name::field_docs(at)
            }
        }

        /// Parsed as the probe parses it (for tests and tools).
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = serde_json::Value::deserialize(d)?;
                <$name as $crate::args::ArgValue>::from_arg(&v, "")
                    .map_err(<D::Error as serde::de::Error>::custom)
            }
        }
    };
}

/// A field's default as a function, or `None` for a required field.
#[doc(hidden)]
#[macro_export]
macro_rules! args_default {
    ($ty:ty) => {
        None::<fn() -> $ty>
    };
    ($ty:ty, $default:expr) => {
        Some((|| $default) as fn() -> $ty)
    };
}

/// Declares an enum of names a case chooses from, each variant with the
/// name a case writes for it.
#[macro_export]
macro_rules! args_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )*
        }

        impl $name {
            /// Every variant, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The name a case writes.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }

            fn names() -> String {
                Self::ALL
                    .iter()
                    .map(|v| format!("`{}`", v.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }

        impl $crate::args::ArgValue for $name {
            fn from_arg(
                v: &serde_json::Value,
                at: &str,
            ) -> Result<Self, $crate::args::ArgError> {
                v.as_str()
                    .and_then(|s| Self::ALL.iter().find(|x| x.name() == s))
                    .copied()
                    .ok_or_else(|| {
                        $crate::args::ArgError::new(
                            at,
                            format!(
                                "expected one of {}, got {}",
                                Self::names(),
                                $crate::args::show(v)
                            ),
                        )
                    })
            }
            fn type_name() -> String {
                format!("one of {}", Self::names())
            }
        }
    };
}

// After the macros: they are in scope only below their definitions.
mod ops;
mod probes;
mod types;

pub use ops::*;
pub use probes::*;
pub use types::*;

/// The README's probe reference: every probe, what it observes, and each
/// argument with its type, default, bounds and meaning. The README holds
/// this text between its markers; a test keeps them the same.
pub fn reference_markdown() -> String {
    let mut s = String::new();
    s += "Every probe's arguments (`args:` of a step), checked when the case loads.\n";
    s += "Bounds are inclusive; a list's items are `NAME[]`.\n";
    for p in PROBE_INFO {
        s += &format!("\n#### `{}`\n\n{}.\n\n", p.name, p.summary);
        let fields = (p.fields)();
        if fields.is_empty() {
            s += "No arguments.\n";
            continue;
        }
        s += "| argument | type | default | bounds | meaning |\n";
        s += "|---|---|---|---|---|\n";
        for f in fields {
            let cell = |t: &str| t.replace('|', "\\|");
            s += &format!(
                "| `{}` | {} | {} | {} | {} |\n",
                f.name,
                cell(&f.type_name),
                match &f.default {
                    Some(d) => format!("`{}`", cell(d)),
                    None => "required".into(),
                },
                cell(&f.bound),
                cell(&f.doc),
            );
        }
    }
    s
}

#[cfg(test)]
mod tests;
