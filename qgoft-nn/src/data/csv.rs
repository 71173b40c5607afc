//! A CSV loader for numeric features with one integer label column.

use super::Dataset;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Parses comma-separated numeric rows; column `label_column` holds the
/// class label (a non-negative integer), every other column a feature.
/// Blank lines are skipped; a first line that does not parse as numbers is
/// treated as a header. `num_classes` defaults to `max label + 1`.
///
/// # Errors
/// [`Error::Data`] naming the line and column for a non-numeric field, a
/// non-integer or negative label, a row of the wrong width, or no rows;
/// [`Error::Label`] for a label `>= num_classes`.
///
/// ```
/// let d = qgoft_nn::data::parse_csv("a,b,y\n1,2,0\n3,4,1\n", "toy.csv", 2, None)?;
/// assert_eq!(d.features().data(), &[1.0, 2.0, 3.0, 4.0]);
/// assert_eq!(d.labels(), &[0, 1]);
/// let err = qgoft_nn::data::parse_csv("1,2,0\n3,x,1\n", "toy.csv", 2, None).unwrap_err();
/// assert!(err.to_string().contains("line 2"));
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn parse_csv(text: &str, source_name: &str, label_column: usize, num_classes: Option<usize>) -> Result<Dataset> {
    let err = |reason: String| Error::Data { source_name: source_name.to_string(), reason };
    let mut width = None;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if width.is_none() && labels.is_empty() && fields.iter().any(|f| f.parse::<f64>().is_err()) {
            continue; // header
        }
        let w = *width.get_or_insert(fields.len());
        if fields.len() != w {
            return Err(err(format!("line {line_no} has {} fields, expected {w}", fields.len())));
        }
        if label_column >= w {
            return Err(err(format!("label column {label_column} is out of range for {w} columns")));
        }
        for (j, f) in fields.iter().enumerate() {
            if j == label_column {
                let label: usize = f.parse().map_err(|_| {
                    err(format!("line {line_no}, column {}: label {f:?} is not a non-negative integer", j + 1))
                })?;
                labels.push(label);
            } else {
                let v: f32 =
                    f.parse().map_err(|_| err(format!("line {line_no}, column {}: {f:?} is not a number", j + 1)))?;
                if !v.is_finite() {
                    return Err(err(format!("line {line_no}, column {}: value {f} is not finite", j + 1)));
                }
                features.push(v);
            }
        }
    }
    let Some(w) = width else { return Err(err("no data rows".into())) };
    let n = labels.len();
    let num_classes = num_classes.unwrap_or_else(|| labels.iter().max().map_or(0, |m| m + 1));
    Dataset::new(Tensor::new(vec![n, w - 1], features)?, labels, num_classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_csv_is_rejected_with_the_place_named() {
        let cases = [
            ("1,2,0\n3,4\n", "line 2 has 2 fields"),
            ("1,2,0\n3,4,-1\n", "line 2, column 3"),
            ("1,2,0.5\n", "line 1, column 3"),
            ("", "no data rows"),
            ("1,2,0\n1,inf,1\n", "not finite"),
        ];
        for (text, want) in cases {
            let e = parse_csv(text, "t.csv", 2, None).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("t.csv"), "{text:?}: {e}");
        }
        let e = parse_csv("1,2,5\n", "t.csv", 2, Some(3)).unwrap_err();
        assert!(matches!(e, Error::Label { label: 5, .. }), "{e}");
        let e = parse_csv("1,2,0\n", "t.csv", 7, None).unwrap_err().to_string();
        assert!(e.contains("label column 7"), "{e}");
    }

    #[test]
    fn label_column_may_be_first() {
        let d = parse_csv("2,0.5,0.25\n0,1,1\n", "t.csv", 0, None).unwrap();
        assert_eq!(d.labels(), &[2, 0]);
        assert_eq!(d.num_classes(), 3);
        assert_eq!(d.features().data(), &[0.5, 0.25, 1.0, 1.0]);
    }
}
