//! [`SqlValue`]: the one value type of the store's SQL, and its mapping to each backend.
//!
//! | `SqlValue` | SQLite      | PostgreSQL parameter            | PostgreSQL column read as     |
//! |------------|-------------|---------------------------------|-------------------------------|
//! | `Null`     | NULL        | NULL of any type                | any NULL                      |
//! | `Int`      | INTEGER     | INT2, INT4, INT8 (range checked), BOOL (0/1) | INT2, INT4, INT8, BOOL (0/1) |
//! | `Real`     | REAL        | FLOAT4, FLOAT8                  | FLOAT4, FLOAT8                |
//! | `Text`     | TEXT        | TEXT, VARCHAR, BPCHAR, NAME, JSON, JSONB | the same           |
//! | `Blob`     | BLOB        | BYTEA                           | BYTEA                         |
//!
//! A PostgreSQL column of another type (NUMERIC, TIMESTAMP, UUID, ...) is an error when read:
//! cast it in the query (`SELECT amount::text`).

use std::error::Error as StdError;

use rusqlite::types::{ToSqlOutput, ValueRef};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// One SQL value, as a parameter or as a column of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// A string.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// One result row: its columns in `SELECT` order.
pub type Row = Vec<SqlValue>;

impl SqlValue {
    /// The integer, if this is an `Int`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The string, if this is a `Text`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes, if this is a `Blob`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            SqlValue::Blob(v) => Some(v),
            _ => None,
        }
    }
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}

impl From<i32> for SqlValue {
    fn from(v: i32) -> Self {
        SqlValue::Int(v.into())
    }
}

impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Real(v)
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

impl From<&[u8]> for SqlValue {
    fn from(v: &[u8]) -> Self {
        SqlValue::Blob(v.to_vec())
    }
}

impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Blob(v)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

// ------------------------------------------------------------------------------- SQLite

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Int(v) => ValueRef::Integer(*v),
            SqlValue::Real(v) => ValueRef::Real(*v),
            SqlValue::Text(v) => ValueRef::Text(v.as_bytes()),
            SqlValue::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

impl SqlValue {
    /// The value of one SQLite column.
    pub(crate) fn from_sqlite(v: ValueRef<'_>) -> SqlValue {
        match v {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(v) => SqlValue::Int(v),
            ValueRef::Real(v) => SqlValue::Real(v),
            ValueRef::Text(v) => SqlValue::Text(String::from_utf8_lossy(v).into_owned()),
            ValueRef::Blob(v) => SqlValue::Blob(v.to_vec()),
        }
    }
}

// --------------------------------------------------------------------------- PostgreSQL

type BoxError = Box<dyn StdError + Sync + Send>;

fn mismatch(value: &SqlValue, ty: &Type) -> BoxError {
    format!("cannot pass {value:?} as a PostgreSQL {ty} parameter").into()
}

fn is_text(ty: &Type) -> bool {
    [
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::UNKNOWN,
        Type::JSON,
    ]
    .contains(ty)
}

impl ToSql for SqlValue {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(mismatch(self, ty)),
            },
            SqlValue::Real(v) => match *ty {
                Type::FLOAT8 => v.to_sql(ty, out),
                // Narrowing is what the column asked for.
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => Err(mismatch(self, ty)),
            },
            SqlValue::Text(v) if is_text(ty) => {
                out.extend_from_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            SqlValue::Text(v) if *ty == Type::JSONB => {
                out.extend_from_slice(&[1]); // the JSONB binary format's version byte
                out.extend_from_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            SqlValue::Blob(v) if *ty == Type::BYTEA => {
                out.extend_from_slice(v);
                Ok(IsNull::No)
            }
            _ => Err(mismatch(self, ty)),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        // The type is checked against the value in `to_sql`, where both are known.
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for SqlValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => SqlValue::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => SqlValue::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => SqlValue::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => SqlValue::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => SqlValue::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => SqlValue::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => SqlValue::Blob(raw.to_vec()),
            Type::JSONB => match raw.split_first() {
                Some((1, json)) => SqlValue::Text(std::str::from_utf8(json)?.to_owned()),
                _ => return Err("unsupported JSONB binary format version".into()),
            },
            ref t if is_text(t) => SqlValue::Text(std::str::from_utf8(raw)?.to_owned()),
            ref t => {
                return Err(format!("cannot read a PostgreSQL {t} column; cast it in SQL").into())
            }
        })
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, BoxError> {
        Ok(SqlValue::Null)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}
