//! Row templates: `device/{id}/alerts`, `user:{user_id}`, `{topic}` — a key, subject, topic or
//! routing key per row, from literal text and column values. Columns are checked against the
//! input schema when the pipeline is validated.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Column(usize),
}

impl Template {
    /// Parses `text` against `schema`. `{{` and `}}` are literal braces.
    ///
    /// # Errors
    /// Unbalanced braces or a column not in the schema (the message lists the columns).
    pub fn parse(text: &str, schema: &SchemaRef) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let index = schema.index_of(name.trim()).map_err(|_| {
                        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                        format!(
                            "template `{text}` names column `{name}`, which is not in the input ({})",
                            columns.join(", ")
                        )
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Column(index));
                }
                '}' => {
                    return Err(format!("template `{text}` has an unmatched `}}` (write `}}}}` for a literal brace)"));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { text: text.to_owned(), parts })
    }

    /// The text when the template names no column.
    pub fn constant(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The columns the template names, in order of appearance.
    pub fn columns(&self) -> Vec<usize> {
        self.parts.iter().filter_map(|part| if let Part::Column(index) = part { Some(*index) } else { None }).collect()
    }

    /// Whether two columns follow each other with no literal between them (then a rendered value
    /// cannot be split back into its columns).
    pub fn has_adjacent_columns(&self) -> bool {
        self.parts.windows(2).any(|pair| matches!(pair, [Part::Column(_), Part::Column(_)]))
    }

    /// A Redis `MATCH` glob for every value the template renders: columns become `*`, glob
    /// characters in literals are escaped.
    pub fn glob(&self) -> String {
        let mut glob = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => {
                    for c in text.chars() {
                        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                            glob.push('\\');
                        }
                        glob.push(c);
                    }
                }
                Part::Column(_) => glob.push('*'),
            }
        }
        glob
    }

    /// Splits a rendered value back into its column values (in [`Template::columns`] order): each
    /// column's value runs up to the next occurrence of the literal that follows it. `None` if
    /// `value` does not have the template's shape.
    pub fn extract<'v>(&self, value: &'v str) -> Option<Vec<&'v str>> {
        let mut rest = value;
        let mut values = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Part::Literal(text) => rest = rest.strip_prefix(text.as_str())?,
                Part::Column(_) => match self.parts.get(i + 1) {
                    Some(Part::Literal(next)) => {
                        let end = rest.find(next.as_str())?;
                        values.push(&rest[..end]);
                        rest = &rest[end..];
                    }
                    Some(Part::Column(_)) => return None,
                    None => {
                        values.push(rest);
                        rest = "";
                    }
                },
            }
        }
        rest.is_empty().then_some(values)
    }

    /// The value for every row of `batch` (nulls render as empty text).
    ///
    /// # Errors
    /// A column type arrow cannot display.
    pub fn render(&self, batch: &RecordBatch) -> Result<Vec<String>, ArrowError> {
        self.render_with(batch, |value, out| out.push_str(value))
    }

    /// Like [`Template::render`], for a template of JSON text: column values are escaped as JSON
    /// string contents, so `{"text": "{message}"}` stays valid whatever the message holds.
    ///
    /// # Errors
    /// A column type arrow cannot display.
    pub fn render_json(&self, batch: &RecordBatch) -> Result<Vec<String>, ArrowError> {
        self.render_with(batch, |value, out| {
            let quoted = serde_json::to_string(value).expect("strings serialize");
            out.push_str(&quoted[1..quoted.len() - 1]);
        })
    }

    fn render_with(&self, batch: &RecordBatch, escape: impl Fn(&str, &mut String)) -> Result<Vec<String>, ArrowError> {
        if let Some(text) = self.constant() {
            return Ok(vec![text.to_owned(); batch.num_rows()]);
        }
        let options = FormatOptions::default();
        let formatters: Vec<Option<ArrayFormatter<'_>>> = self
            .parts
            .iter()
            .map(|part| match part {
                Part::Literal(_) => Ok(None),
                Part::Column(index) => ArrayFormatter::try_new(batch.column(*index).as_ref(), &options).map(Some),
            })
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(batch.num_rows());
        let mut scratch = String::new();
        for row in 0..batch.num_rows() {
            let mut value = String::new();
            for (part, formatter) in self.parts.iter().zip(&formatters) {
                match (part, formatter) {
                    (Part::Literal(text), _) => value.push_str(text),
                    (Part::Column(_), Some(formatter)) => {
                        use std::fmt::Write;
                        scratch.clear();
                        let _ = write!(scratch, "{}", formatter.value(row));
                        escape(&scratch, &mut value);
                    }
                    (Part::Column(_), None) => unreachable!("a formatter per column part"),
                }
            }
            out.push(value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn renders_columns_and_literal_braces_per_row() {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![Some(7), None])) as _),
            ("site", Arc::new(StringArray::from(vec!["a", "b"])) as _),
        ])
        .unwrap();
        let template = Template::parse("dev/{site}/{id}{{x}}", &batch.schema()).unwrap();
        let quoted =
            RecordBatch::try_from_iter([("m", Arc::new(StringArray::from(vec!["say \"hi\"\n"])) as _)]).unwrap();
        let json = Template::parse(r#"{{"text": "{m}"}}"#, &quoted.schema()).unwrap();
        assert_eq!(json.render_json(&quoted).unwrap()[0], r#"{"text": "say \"hi\"\n"}"#);
        assert_eq!(template.render(&batch).unwrap(), vec!["dev/a/7{x}", "dev/b/{x}"]);
        assert_eq!(Template::parse("fixed", &batch.schema()).unwrap().constant(), Some("fixed"));
        assert_eq!(template.columns(), vec![1, 0]);
        assert_eq!(template.extract("dev/a/7{x}"), Some(vec!["a", "7"]));
        assert_eq!(template.extract("dev/a/7"), None);
        assert_eq!(Template::parse("k*:{id}", &batch.schema()).unwrap().glob(), "k\\*:*");
        let err = Template::parse("{nope}", &batch.schema()).unwrap_err();
        assert!(err.contains("`nope`") && err.contains("id, site"), "{err}");
    }
}
