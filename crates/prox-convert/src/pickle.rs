//! A pickle reader that never executes anything: the opcodes `torch.save` writes (protocol 2,
//! and the few of protocols 3–5 that torch might emit) are interpreted into plain [`Value`]s.
//!
//! Globals are kept as names. The three calls a checkpoint needs are recognised by name and
//! rebuilt as data: `torch._utils._rebuild_tensor_v2` (a [`TensorRef`] pointing into the
//! archive, its bytes not read), `torch._utils._rebuild_parameter` (the same tensor) and
//! `collections.OrderedDict` (a dict). Any other call becomes an opaque [`Value::Object`]
//! holding only the callee's name, so an optimizer state or a hyperparameter of an unknown type
//! is carried past, never run.
//!
//! Memoized containers are copied when fetched (`BINGET`), as candle's reader does: a container
//! shared between two places and mutated after being memoized would be seen as it was when
//! memoized. `torch.save` of state dicts shares no containers; tensors, storages and strings,
//! which it does share, are immutable here. Nesting depth and the number of values built (copies
//! included) are bounded, so that a hostile file cannot exhaust the stack or memory.

use std::collections::HashMap;

/// Nesting deeper than this is refused: values are dropped and walked recursively.
const MAX_DEPTH: u32 = 200;
/// The most values one pickle may build, memo copies included. A fabric checkpoint of a 7B model
/// builds tens of thousands; this bounds a hostile file's memory to a few hundred MB.
const MAX_VALUES: u64 = 4_000_000;

/// A tensor's element type, from the name of its storage class (`torch FloatStorage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage_class(name: &str) -> Option<Dtype> {
        Some(match name {
            "DoubleStorage" => Dtype::F64,
            "FloatStorage" => Dtype::F32,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }
}

/// A storage as `persistent_load` names it: the archive entry `data/{key}`, its element type
/// and its length in elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: Dtype,
    pub numel: u64,
}

/// A tensor: a view (offset, shape, strides, in elements) of a storage whose bytes are still in
/// the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

impl TensorRef {
    /// The number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Whether the elements lie in row-major order with no gaps.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1u64;
        for (&size, &stride) in self.shape.iter().zip(&self.stride).rev() {
            if size != 1 && stride != expected {
                return false;
            }
            expected = expected.saturating_mul(size);
        }
        true
    }
}

/// A container's items with the bookkeeping that bounds depth and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Items<T> {
    pub items: Vec<T>,
    depth: u32,
    values: u64,
}

impl<T> Items<T> {
    fn empty() -> Self {
        Items {
            items: Vec::new(),
            depth: 1,
            values: 1,
        }
    }
}

/// A value built by the pickle machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Items<Value>),
    List(Items<Value>),
    Dict(Items<(Value, Value)>),
    /// A global named by `GLOBAL`/`STACK_GLOBAL`, not imported.
    Global {
        module: String,
        name: String,
    },
    Storage(StorageRef),
    Tensor(TensorRef),
    /// The result of calling a global other than the ones rebuilt as data; never called.
    Object {
        module: String,
        name: String,
    },
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(c) | Value::List(c) => c.depth,
            Value::Dict(c) => c.depth,
            _ => 0,
        }
    }

    fn values(&self) -> u64 {
        match self {
            Value::Tuple(c) | Value::List(c) => c.values,
            Value::Dict(c) => c.values,
            _ => 1,
        }
    }

    /// The entries of a dict.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(c) => Some(&c.items),
            _ => None,
        }
    }

    /// The value under a string key of a dict (the last one, as Python keeps the last).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .rev()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            .map(|(_, v)| v)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// A number as a float (ints included, as Python compares them).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global { .. } => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Object { .. } => "object",
        }
    }
}

/// Why a pickle could not be read: what, and at which byte of the pickle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {position}: {message}")]
pub struct PickleError {
    pub position: usize,
    pub message: String,
}

/// One slot of the machine's stack: a value or a `MARK`.
#[derive(Debug)]
enum Slot {
    Mark,
    Value(Value),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the current opcode started, for errors.
    op_start: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
    built: u64,
}

/// Reads a whole pickle into a value.
pub fn parse(data: &[u8]) -> Result<Value, PickleError> {
    let mut machine = Machine {
        data,
        pos: 0,
        op_start: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        built: 0,
    };
    machine.run()
}

impl<'a> Machine<'a> {
    fn error(&self, message: impl Into<String>) -> PickleError {
        PickleError {
            position: self.op_start,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| self.error("the pickle ends in the middle of an opcode"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32_len(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn u64_len(&mut self) -> Result<usize, PickleError> {
        let n = u64::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.error("a length beyond the address space"))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.error("a text argument without its end of line"))?;
        let line = std::str::from_utf8(&rest[..end])
            .map_err(|_| self.error("a text argument that is not UTF-8"))?;
        self.pos += end + 1;
        Ok(line)
    }

    fn utf8(&self, bytes: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error("a string that is not UTF-8"))
    }

    fn push(&mut self, value: Value) -> Result<(), PickleError> {
        self.count(&value)?;
        self.stack.push(Slot::Value(value));
        Ok(())
    }

    fn count(&mut self, value: &Value) -> Result<(), PickleError> {
        self.built = self.built.saturating_add(value.values());
        if self.built > MAX_VALUES {
            return Err(self.error(format!("more than {MAX_VALUES} values")));
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err(self.error("a MARK where a value was expected")),
            None => Err(self.error("the stack is empty")),
        }
    }

    fn top_mut(&mut self) -> Result<&mut Value, PickleError> {
        match self.stack.last_mut() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err(PickleError {
                position: self.op_start,
                message: "a MARK where a value was expected".to_owned(),
            }),
            None => Err(PickleError {
                position: self.op_start,
                message: "the stack is empty".to_owned(),
            }),
        }
    }

    /// The values above the topmost MARK, which is removed.
    fn pop_to_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| self.error("no MARK on the stack"))?;
        // The drained range starts after the topmost MARK, so it holds only values.
        let values = self
            .stack
            .drain(mark + 1..)
            .filter_map(|slot| match slot {
                Slot::Value(v) => Some(v),
                Slot::Mark => None,
            })
            .collect();
        self.stack.truncate(mark);
        Ok(values)
    }

    fn container<T>(
        &self,
        items: Vec<T>,
        measure: impl Fn(&T) -> (u32, u64),
    ) -> Result<Items<T>, PickleError> {
        let mut depth = 0;
        let mut values = 1u64;
        for item in &items {
            let (d, v) = measure(item);
            depth = depth.max(d);
            values = values.saturating_add(v);
        }
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(self.error(format!("values nested more than {MAX_DEPTH} deep")));
        }
        Ok(Items {
            items,
            depth,
            values,
        })
    }

    fn seq(&self, items: Vec<Value>) -> Result<Items<Value>, PickleError> {
        self.container(items, |v| (v.depth(), v.values()))
    }

    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    fn pairs(&self, flat: Vec<Value>) -> Result<Items<(Value, Value)>, PickleError> {
        if flat.len() % 2 != 0 {
            return Err(self.error("a dict built from an odd number of values"));
        }
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut iter = flat.into_iter();
        while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
            pairs.push((k, v));
        }
        self.container(pairs, |(k, v)| {
            (
                k.depth().max(v.depth()),
                k.values().saturating_add(v.values()),
            )
        })
    }

    /// Adds items to the list on top of the stack (APPEND, APPENDS).
    fn extend_list(&mut self, new: Vec<Value>) -> Result<(), PickleError> {
        let position = self.op_start;
        let list = match self.top_mut()? {
            Value::List(list) => list,
            other => {
                return Err(PickleError {
                    position,
                    message: format!("APPEND to a {}", other.kind()),
                })
            }
        };
        for item in new {
            list.depth = list.depth.max(item.depth() + 1);
            list.values = list.values.saturating_add(item.values());
            list.items.push(item);
        }
        if list.depth > MAX_DEPTH {
            return Err(PickleError {
                position,
                message: format!("values nested more than {MAX_DEPTH} deep"),
            });
        }
        Ok(())
    }

    /// Adds key/value pairs to the dict on top of the stack (SETITEM, SETITEMS).
    fn extend_dict(&mut self, flat: Vec<Value>) -> Result<(), PickleError> {
        let new = self.pairs(flat)?;
        let position = self.op_start;
        let dict = match self.top_mut()? {
            Value::Dict(dict) => dict,
            other => {
                return Err(PickleError {
                    position,
                    message: format!("SETITEM on a {}", other.kind()),
                })
            }
        };
        dict.depth = dict.depth.max(new.depth);
        dict.values = dict.values.saturating_add(new.values);
        dict.items.extend(new.items);
        if dict.depth > MAX_DEPTH {
            return Err(PickleError {
                position,
                message: format!("values nested more than {MAX_DEPTH} deep"),
            });
        }
        Ok(())
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let value = match self.stack.last() {
            Some(Slot::Value(v)) => v.clone(),
            _ => return Err(self.error("memoizing without a value on the stack")),
        };
        self.count(&value)?;
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), PickleError> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.error(format!("memo entry {index} was never stored")))?;
        self.push(value)
    }

    fn global(&mut self, module: String, name: String) -> Result<(), PickleError> {
        self.push(Value::Global { module, name })
    }

    /// REDUCE: the calls a checkpoint needs are rebuilt as data, every other one is recorded by
    /// name only.
    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global { module, name } = callable else {
            return Err(self.error(format!("calling a {}", callable.kind())));
        };
        let Value::Tuple(args) = args else {
            return Err(self.error(format!("{module}.{name} called with a {}", args.kind())));
        };
        match (module.as_str(), name.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2") => self.rebuild_tensor(&args.items),
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => match args.items.first() {
                Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
                _ => Err(self.error(format!("{name} of something that is not a tensor"))),
            },
            ("collections", "OrderedDict") if args.items.is_empty() => {
                Ok(Value::Dict(Items::empty()))
            }
            _ => Ok(Value::Object { module, name }),
        }
    }

    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value, PickleError> {
        let (Some(Value::Storage(storage)), Some(offset), Some(shape), Some(stride)) =
            (args.first(), args.get(1), args.get(2), args.get(3))
        else {
            return Err(
                self.error("_rebuild_tensor_v2 without (storage, offset, shape, stride) arguments")
            );
        };
        let offset = self.non_negative(offset, "storage offset")?;
        let shape = self.dims(shape, "shape")?;
        let stride = self.dims(stride, "stride")?;
        if shape.len() != stride.len() {
            return Err(self.error(format!(
                "a tensor of {} dimensions with {} strides",
                shape.len(),
                stride.len()
            )));
        }
        // The furthest element must lie inside the storage.
        let mut last = offset;
        let mut empty = false;
        for (&size, &step) in shape.iter().zip(&stride) {
            if size == 0 {
                empty = true;
            }
            last = size
                .saturating_sub(1)
                .checked_mul(step)
                .and_then(|d| last.checked_add(d))
                .ok_or_else(|| self.error("tensor extent overflows"))?;
        }
        if !empty && last >= storage.numel {
            return Err(self.error(format!(
                "a tensor reaching element {last} of storage {} which has {}",
                storage.key, storage.numel
            )));
        }
        Ok(Value::Tensor(TensorRef {
            storage: storage.clone(),
            offset,
            shape,
            stride,
        }))
    }

    fn non_negative(&self, value: &Value, what: &str) -> Result<u64, PickleError> {
        match value {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            other => Err(self.error(format!("a tensor {what} that is a {}", other.kind()))),
        }
    }

    fn dims(&self, value: &Value, what: &str) -> Result<Vec<u64>, PickleError> {
        match value {
            Value::Tuple(t) => t.items.iter().map(|v| self.non_negative(v, what)).collect(),
            other => Err(self.error(format!("a tensor {what} that is a {}", other.kind()))),
        }
    }

    /// BINPERSID: torch's `('storage', StorageClass, key, location, numel)`.
    fn persistent_load(&self, pid: Value) -> Result<Value, PickleError> {
        let Value::Tuple(t) = &pid else {
            return Err(self.error(format!("a persistent id that is a {}", pid.kind())));
        };
        match t.items.as_slice() {
            [Value::Str(tag), Value::Global { name, .. }, Value::Str(key), _location, Value::Int(numel)]
                if tag == "storage" && *numel >= 0 =>
            {
                let dtype = Dtype::from_storage_class(name)
                    .ok_or_else(|| self.error(format!("unknown storage type {name}")))?;
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(
                        self.error(format!("a storage key {key:?} that names no archive entry"))
                    );
                }
                Ok(Value::Storage(StorageRef {
                    key: key.clone(),
                    dtype,
                    numel: *numel as u64,
                }))
            }
            _ => Err(self.error("a persistent id that is not a torch storage")),
        }
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.op_start = self.pos;
            let op = self.byte()?;
            match op {
                0x80 => {
                    // PROTO
                    let version = self.byte()?;
                    if version > 5 {
                        return Err(self.error(format!("pickle protocol {version}")));
                    }
                }
                0x95 => {
                    // FRAME: a length prefix only
                    self.take(8)?;
                }
                b'.' => {
                    // STOP
                    let value = self.pop()?;
                    return Ok(value);
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_to_mark()?;
                }
                b'2' => {
                    let top = match self.stack.last() {
                        Some(Slot::Value(v)) => v.clone(),
                        _ => return Err(self.error("DUP without a value")),
                    };
                    self.push(top)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes
                    let n = usize::from(self.byte()?);
                    let bytes = self.take(n)?;
                    let v = self.long(bytes)?;
                    self.push(Value::Int(v))?;
                }
                0x8b => {
                    let n = self.u32_len()?;
                    let bytes = self.take(n)?;
                    let v = self.long(bytes)?;
                    self.push(Value::Int(v))?;
                }
                b'I' => {
                    let line = self.line()?;
                    let value = match line {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(
                            line.parse()
                                .map_err(|_| self.error(format!("INT {line:?}")))?,
                        ),
                    };
                    self.push(value)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(v))?;
                }
                b'X' => {
                    let n = self.u32_len()?;
                    let bytes = self.take(n)?;
                    let s = self.utf8(bytes)?;
                    self.push(Value::Str(s))?;
                }
                0x8c => {
                    let n = usize::from(self.byte()?);
                    let bytes = self.take(n)?;
                    let s = self.utf8(bytes)?;
                    self.push(Value::Str(s))?;
                }
                0x8d => {
                    let n = self.u64_len()?;
                    let bytes = self.take(n)?;
                    let s = self.utf8(bytes)?;
                    self.push(Value::Str(s))?;
                }
                b'B' => {
                    let n = self.u32_len()?;
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes))?;
                }
                b'C' => {
                    let n = usize::from(self.byte()?);
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes))?;
                }
                0x8e => {
                    let n = self.u64_len()?;
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes))?;
                }
                b'T' => {
                    let n = self.u32_len()?;
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes))?;
                }
                b'U' => {
                    let n = usize::from(self.byte()?);
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes))?;
                }
                b')' => self.push(Value::Tuple(Items::empty()))?,
                b't' => {
                    let items = self.pop_to_mark()?;
                    let tuple = self.seq(items)?;
                    self.push(Value::Tuple(tuple))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let tuple = self.seq(items)?;
                    self.push(Value::Tuple(tuple))?;
                }
                b']' => self.push(Value::List(Items::empty()))?,
                b'l' => {
                    let items = self.pop_to_mark()?;
                    let list = self.seq(items)?;
                    self.push(Value::List(list))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_to_mark()?;
                    self.extend_list(items)?;
                }
                b'}' => self.push(Value::Dict(Items::empty()))?,
                b'd' => {
                    let flat = self.pop_to_mark()?;
                    let dict = self.pairs(flat)?;
                    self.push(Value::Dict(dict))?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.extend_dict(vec![key, value])?;
                }
                b'u' => {
                    let flat = self.pop_to_mark()?;
                    self.extend_dict(flat)?;
                }
                b'c' => {
                    let module = self.line()?.to_owned();
                    let name = self.line()?.to_owned();
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => self.global(module, name)?,
                        _ => return Err(self.error("STACK_GLOBAL of values that are not strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.reduce(callable, args)?;
                    self.push(value)?;
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args), recorded by name
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let Value::Global { module, name } = cls else {
                        return Err(self.error(format!("NEWOBJ of a {}", cls.kind())));
                    };
                    self.push(Value::Object { module, name })?;
                }
                b'b' => {
                    // BUILD sets an object's state: nothing to set on data, so the state is
                    // dropped (an OrderedDict's `_metadata`, an object's fields).
                    let _state = self.pop()?;
                    self.top_mut()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.push(storage)?;
                }
                b'h' => {
                    let index = u32::from(self.byte()?);
                    self.memo_get(index)?;
                }
                b'j' => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.memo_get(index)?;
                }
                b'q' => {
                    let index = u32::from(self.byte()?);
                    self.memo_put(index)?;
                }
                b'r' => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.memo_put(index)?;
                }
                0x94 => {
                    // MEMOIZE: the next free index
                    let index = u32::try_from(self.memo.len())
                        .map_err(|_| self.error("too many memo entries"))?;
                    self.memo_put(index)?;
                }
                other => {
                    return Err(self.error(format!("unsupported pickle opcode 0x{other:02x}")));
                }
            }
        }
    }

    fn long(&self, bytes: &[u8]) -> Result<i64, PickleError> {
        if bytes.len() > 8 {
            return Err(self.error("an integer wider than 64 bits"));
        }
        if bytes.is_empty() {
            return Ok(0);
        }
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(i64::from_le_bytes(buf))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_dict_of_ints_and_strings_reads_back() {
        // pickle.dumps({'a': 1, 'b': 'x', 'c': [1.5, None]}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02X\x01\x00\x00\x00xq\x03X\x01\x00\x00\x00cq\x04]q\x05(G?\xf8\x00\x00\x00\x00\x00\x00Neu.";
        let value = parse(data).unwrap();
        assert_eq!(value.get("a"), Some(&Value::Int(1)));
        assert_eq!(value.get("b").and_then(Value::as_str), Some("x"));
        let Some(Value::List(list)) = value.get("c") else {
            panic!("c is not a list: {value:?}");
        };
        assert_eq!(list.items, vec![Value::Float(1.5), Value::None]);
    }

    #[test]
    fn long1_reads_negative_and_wide_integers() {
        // pickle.dumps([-1, 2**40], protocol=2)
        let data = b"\x80\x02]q\x00(J\xff\xff\xff\xff\x8a\x06\x00\x00\x00\x00\x00\x01e.";
        let value = parse(data).unwrap();
        let Value::List(list) = value else {
            panic!("not a list");
        };
        assert_eq!(list.items, vec![Value::Int(-1), Value::Int(1 << 40)]);
    }

    #[test]
    fn unknown_calls_are_recorded_not_run() {
        // pickle.dumps(os.system('x')) as a hostile file would write it
        let data = b"cos\nsystem\nX\x01\x00\x00\x00x\x85R.";
        let value = parse(data).unwrap();
        assert_eq!(
            value,
            Value::Object {
                module: "os".to_owned(),
                name: "system".to_owned()
            }
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut data = vec![b')'];
        data.extend(std::iter::repeat_n(0x85u8, 100_000));
        data.push(b'.');
        let error = parse(&data).unwrap_err();
        assert!(error.message.contains("nested"), "{error}");
    }

    #[test]
    fn doubling_a_list_through_the_memo_is_bounded() {
        // l = []; repeatedly: l = [l, l] through BINPUT/BINGET
        let mut data = vec![b']'];
        for _ in 0..64 {
            data.extend_from_slice(b"q\x00h\x00\x86");
        }
        data.push(b'.');
        assert!(parse(&data).is_err());
    }

    #[test]
    fn a_tensor_reaching_past_its_storage_is_refused() {
        let data = b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x05\x85K\x01\x85\x89)tR.";
        let error = parse(data).unwrap_err();
        assert!(error.message.contains("storage 0"), "{error}");
    }

    #[test]
    fn contiguity_follows_strides() {
        let t = |shape: Vec<u64>, stride: Vec<u64>| TensorRef {
            storage: StorageRef {
                key: "0".to_owned(),
                dtype: Dtype::F32,
                numel: 100,
            },
            offset: 0,
            shape,
            stride,
        };
        assert!(t(vec![3, 4], vec![4, 1]).is_contiguous());
        assert!(!t(vec![3, 4], vec![1, 3]).is_contiguous());
        assert!(t(vec![1, 4], vec![99, 1]).is_contiguous());
        assert!(t(vec![], vec![]).is_contiguous());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&data);
        }

        #[test]
        fn opcode_soup_never_panics(ops in proptest::collection::vec(
            prop_oneof![
                Just(b'('), Just(b')'), Just(b']'), Just(b'}'), Just(b't'), Just(b'l'),
                Just(b'd'), Just(b'a'), Just(b'e'), Just(b's'), Just(b'u'), Just(b'R'),
                Just(b'b'), Just(b'Q'), Just(b'N'), Just(0x85u8), Just(0x86u8), Just(b'2'),
                Just(b'0'), Just(b'1'), Just(0x94u8), Just(b'.'), Just(0x88u8),
            ],
            0..200,
        )) {
            let _ = parse(&ops);
        }
    }
}
