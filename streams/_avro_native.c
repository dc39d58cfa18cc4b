/* Native Avro binary codecs for the processor hot path.
 *
 * streams/_avro_codegen.py walks a message schema alongside its dataclass and hands
 * this module a *program*: nested tuples saying, per field, which Avro type to write
 * or read and which Python class, enum table or nested program goes with it. A Codec
 * turns the program into C structs once, then encodes a (value, meta) pair straight
 * into a bytes object, or decodes bytes straight into the dataclasses: no dicts, no
 * per-field Python calls.
 *
 * The bytes are the same as fastavro's for the same schema (the tests check both
 * directions); the generated Python codecs remain the fallback where this module did
 * not build. Opcodes must match _avro_codegen.OP_*.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "slots.h"
#include <stdint.h>
#include <string.h>

enum {
    OP_LONG = 0,
    OP_STRING = 1,
    OP_BOOLEAN = 2,
    OP_DOUBLE = 3,
    OP_FLOAT = 4,
    OP_OPTIONAL = 5,
    OP_ENUM = 6,
    OP_RECORD = 7,
    OP_ARRAY = 8,
    OP_MAP = 9,
};

typedef struct Node Node;
struct Node {
    int op;
    /* OP_OPTIONAL */
    int null_index;
    /* OP_OPTIONAL, OP_ARRAY, OP_MAP */
    Node *inner;
    /* OP_ENUM: member -> symbol index; index -> member (None where unknown) */
    PyObject *enum_table;
    PyObject *enum_members;
    /* OP_ENUM (class name for errors), OP_RECORD */
    PyObject *cls;
    /* OP_RECORD: fields in schema order */
    Py_ssize_t nfields;
    PyObject **names;
    Node **fields;
    /* OP_RECORD: 1 = allocate and set slots (no __init__ to run); 0 = call cls(*args)
     * with args in ctor_order (schema index of each constructor argument) */
    int direct;
    Py_ssize_t *ctor_order;
    /* OP_RECORD: where each field lives in an instance of exactly cls (a __slots__
     * member), or -1 to go through getattr/setattr */
    Py_ssize_t *offsets;
};

static void node_free(Node *node) {
    if (node == NULL) {
        return;
    }
    node_free(node->inner);
    Py_XDECREF(node->enum_table);
    Py_XDECREF(node->enum_members);
    Py_XDECREF(node->cls);
    if (node->names != NULL) {
        for (Py_ssize_t i = 0; i < node->nfields; i++) {
            Py_XDECREF(node->names[i]);
        }
        PyMem_Free(node->names);
    }
    if (node->fields != NULL) {
        for (Py_ssize_t i = 0; i < node->nfields; i++) {
            node_free(node->fields[i]);
        }
        PyMem_Free(node->fields);
    }
    PyMem_Free(node->ctor_order);
    PyMem_Free(node->offsets);
    PyMem_Free(node);
}

static Node *node_build(PyObject *program);

static int program_int(PyObject *program, Py_ssize_t index, long *out) {
    long value = PyLong_AsLong(PyTuple_GET_ITEM(program, index));
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = value;
    return 0;
}

/* (OP_RECORD, cls, names: tuple[str], programs: tuple, direct: bool, ctor_order: tuple[int]) */
static int node_build_record(Node *node, PyObject *program) {
    if (PyTuple_GET_SIZE(program) != 6) {
        PyErr_SetString(PyExc_ValueError, "record program needs 6 items");
        return -1;
    }
    PyObject *names = PyTuple_GET_ITEM(program, 2);
    PyObject *programs = PyTuple_GET_ITEM(program, 3);
    PyObject *order = PyTuple_GET_ITEM(program, 5);
    if (!PyType_Check(PyTuple_GET_ITEM(program, 1)) || !PyTuple_Check(names) || !PyTuple_Check(programs) ||
        !PyTuple_Check(order) || PyTuple_GET_SIZE(names) != PyTuple_GET_SIZE(programs) ||
        PyTuple_GET_SIZE(order) != PyTuple_GET_SIZE(names)) {
        PyErr_SetString(PyExc_ValueError, "malformed record program");
        return -1;
    }
    node->cls = Py_NewRef(PyTuple_GET_ITEM(program, 1));
    node->direct = PyObject_IsTrue(PyTuple_GET_ITEM(program, 4));
    if (node->direct < 0) {
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    node->names = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
    node->fields = PyMem_Calloc(n ? n : 1, sizeof(Node *));
    node->ctor_order = PyMem_Calloc(n ? n : 1, sizeof(Py_ssize_t));
    node->offsets = PyMem_Calloc(n ? n : 1, sizeof(Py_ssize_t));
    if (node->names == NULL || node->fields == NULL || node->ctor_order == NULL || node->offsets == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    node->nfields = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_ValueError, "field names must be str");
            return -1;
        }
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        node->names[i] = name;
        node->offsets[i] = slot_offset((PyTypeObject *)node->cls, name);
        node->fields[i] = node_build(PyTuple_GET_ITEM(programs, i));
        if (node->fields[i] == NULL) {
            return -1;
        }
        Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(order, i));
        if (at == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (at < 0 || at >= n) {
            PyErr_SetString(PyExc_ValueError, "constructor order out of range");
            return -1;
        }
        node->ctor_order[i] = at;
    }
    return 0;
}

static Node *node_build(PyObject *program) {
    if (!PyTuple_Check(program) || PyTuple_GET_SIZE(program) < 1) {
        PyErr_SetString(PyExc_ValueError, "a program node is a non-empty tuple");
        return NULL;
    }
    Node *node = PyMem_Calloc(1, sizeof(Node));
    if (node == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    long op;
    if (program_int(program, 0, &op) < 0) {
        goto fail;
    }
    node->op = (int)op;
    Py_ssize_t size = PyTuple_GET_SIZE(program);
    switch (op) {
    case OP_LONG:
    case OP_STRING:
    case OP_BOOLEAN:
    case OP_DOUBLE:
    case OP_FLOAT:
        break;
    case OP_OPTIONAL: { /* (OP_OPTIONAL, null_index, inner) */
        long null_index;
        if (size != 3 || program_int(program, 1, &null_index) < 0) {
            goto malformed;
        }
        if (null_index != 0 && null_index != 1) {
            goto malformed;
        }
        node->null_index = (int)null_index;
        node->inner = node_build(PyTuple_GET_ITEM(program, 2));
        if (node->inner == NULL) {
            goto fail;
        }
        break;
    }
    case OP_ENUM: /* (OP_ENUM, table: dict, members: tuple, cls) */
        if (size != 4 || !PyDict_Check(PyTuple_GET_ITEM(program, 1)) || !PyTuple_Check(PyTuple_GET_ITEM(program, 2))) {
            goto malformed;
        }
        node->enum_table = Py_NewRef(PyTuple_GET_ITEM(program, 1));
        node->enum_members = Py_NewRef(PyTuple_GET_ITEM(program, 2));
        node->cls = Py_NewRef(PyTuple_GET_ITEM(program, 3));
        break;
    case OP_RECORD:
        if (node_build_record(node, program) < 0) {
            goto fail;
        }
        break;
    case OP_ARRAY: /* (OP_ARRAY, items) */
    case OP_MAP:   /* (OP_MAP, values) */
        if (size != 2) {
            goto malformed;
        }
        node->inner = node_build(PyTuple_GET_ITEM(program, 1));
        if (node->inner == NULL) {
            goto fail;
        }
        break;
    default:
        goto malformed;
    }
    return node;
malformed:
    if (!PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "malformed program node (opcode %ld)", op);
    }
fail:
    node_free(node);
    return NULL;
}

/* ------------------------------------------------------------------ output buffer */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    char local[512];
} Buf;

static void buf_init(Buf *buf) {
    buf->data = buf->local;
    buf->len = 0;
    buf->cap = sizeof(buf->local);
}

static void buf_release(Buf *buf) {
    if (buf->data != buf->local) {
        PyMem_Free(buf->data);
    }
}

static int buf_grow(Buf *buf, Py_ssize_t extra) {
    Py_ssize_t want = buf->len + extra;
    Py_ssize_t cap = buf->cap * 2;
    while (cap < want) {
        cap *= 2;
    }
    char *data;
    if (buf->data == buf->local) {
        data = PyMem_Malloc(cap);
        if (data != NULL) {
            memcpy(data, buf->local, buf->len);
        }
    } else {
        data = PyMem_Realloc(buf->data, cap);
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buf->data = data;
    buf->cap = cap;
    return 0;
}

static inline int buf_reserve(Buf *buf, Py_ssize_t extra) {
    if (buf->len + extra <= buf->cap) {
        return 0;
    }
    return buf_grow(buf, extra);
}

static inline int buf_put(Buf *buf, const void *bytes, Py_ssize_t size) {
    if (buf_reserve(buf, size) < 0) {
        return -1;
    }
    memcpy(buf->data + buf->len, bytes, size);
    buf->len += size;
    return 0;
}

static inline int put_varint(Buf *buf, uint64_t z) {
    if (buf_reserve(buf, 10) < 0) {
        return -1;
    }
    unsigned char *out = (unsigned char *)buf->data + buf->len;
    Py_ssize_t n = 0;
    while (z >= 0x80) {
        out[n++] = (unsigned char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    out[n++] = (unsigned char)z;
    buf->len += n;
    return 0;
}

static inline int put_long(Buf *buf, int64_t value) {
    return put_varint(buf, ((uint64_t)value << 1) ^ (uint64_t)(value >> 63));
}

/* ------------------------------------------------------------------ encoding */

static int encode_node(Node *node, PyObject *value, Buf *buf);

static int encode_string(PyObject *value, Buf *buf) {
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "expected str, got %.200s", Py_TYPE(value)->tp_name);
        return -1;
    }
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(value, &size);
    if (text == NULL) {
        return -1;
    }
    if (put_long(buf, size) < 0) {
        return -1;
    }
    return buf_put(buf, text, size);
}

/* An Avro double (size 8) or float (size 4), little-endian. */
static int encode_real(PyObject *value, Py_ssize_t size, Buf *buf) {
    double x = PyFloat_AsDouble(value);
    if (x == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    char *at = buf_reserve(buf, size) < 0 ? NULL : buf->data + buf->len;
    if (at == NULL || (size == 8 ? PyFloat_Pack8(x, at, 1) : PyFloat_Pack4(x, at, 1)) < 0) {
        return -1;
    }
    buf->len += size;
    return 0;
}

static int encode_record(Node *node, PyObject *value, Buf *buf) {
    int exact = (PyObject *)Py_TYPE(value) == node->cls;
    for (Py_ssize_t i = 0; i < node->nfields; i++) {
        PyObject *field = NULL;
        if (exact && node->offsets[i] >= 0) { /* a slot of exactly this class: read it in place */
            field = *(PyObject **)((char *)value + node->offsets[i]);
            Py_XINCREF(field);
        }
        if (field == NULL) {
            field = PyObject_GetAttr(value, node->names[i]);
            if (field == NULL) {
                return -1;
            }
        }
        int failed = encode_node(node->fields[i], field, buf);
        Py_DECREF(field);
        if (failed < 0) {
            return -1;
        }
    }
    return 0;
}

static int encode_array(Node *node, PyObject *value, Buf *buf) {
    PyObject *items = PySequence_Fast(value, "an Avro array needs a sequence");
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    if (n > 0) {
        if (put_long(buf, n) < 0) {
            goto fail;
        }
        PyObject **item = PySequence_Fast_ITEMS(items);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (encode_node(node->inner, item[i], buf) < 0) {
                goto fail;
            }
        }
    }
    Py_DECREF(items);
    return put_varint(buf, 0);
fail:
    Py_DECREF(items);
    return -1;
}

static int encode_map(Node *node, PyObject *value, Buf *buf) {
    if (!PyDict_Check(value)) {
        PyErr_Format(PyExc_TypeError, "an Avro map needs a dict, got %.200s", Py_TYPE(value)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyDict_GET_SIZE(value);
    if (n > 0) {
        PyObject *keys = PyDict_Keys(value); /* sorted: equal maps give equal bytes */
        if (keys == NULL) {
            return -1;
        }
        if (PyList_Sort(keys) < 0 || put_long(buf, n) < 0) {
            Py_DECREF(keys);
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *key = PyList_GET_ITEM(keys, i);
            PyObject *item = PyDict_GetItemWithError(value, key);
            if (item == NULL) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_RuntimeError, "map changed while encoding");
                }
                Py_DECREF(keys);
                return -1;
            }
            Py_INCREF(item);
            int failed = encode_string(key, buf) < 0 || encode_node(node->inner, item, buf) < 0;
            Py_DECREF(item);
            if (failed) {
                Py_DECREF(keys);
                return -1;
            }
        }
        Py_DECREF(keys);
    }
    return put_varint(buf, 0);
}

static int encode_node(Node *node, PyObject *value, Buf *buf) {
    switch (node->op) {
    case OP_LONG: {
        int overflow;
        long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError, "integer out of Avro long range");
            return -1;
        }
        if (n == -1 && PyErr_Occurred()) {
            return -1;
        }
        return put_long(buf, n);
    }
    case OP_STRING:
        return encode_string(value, buf);
    case OP_BOOLEAN: {
        int truth = PyObject_IsTrue(value);
        if (truth < 0) {
            return -1;
        }
        char byte = truth ? 1 : 0;
        return buf_put(buf, &byte, 1);
    }
    case OP_DOUBLE:
        return encode_real(value, 8, buf);
    case OP_FLOAT:
        return encode_real(value, 4, buf);
    case OP_OPTIONAL:
        if (value == Py_None) {
            return put_long(buf, node->null_index);
        }
        if (put_long(buf, 1 - node->null_index) < 0) {
            return -1;
        }
        return encode_node(node->inner, value, buf);
    case OP_ENUM: {
        PyObject *index = PyDict_GetItemWithError(node->enum_table, value);
        if (index == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ValueError, "%R is not a symbol of %R", value, node->cls);
            }
            return -1;
        }
        return put_long(buf, PyLong_AsLongLong(index));
    }
    case OP_RECORD:
        return encode_record(node, value, buf);
    case OP_ARRAY:
        return encode_array(node, value, buf);
    case OP_MAP:
        return encode_map(node, value, buf);
    }
    PyErr_SetString(PyExc_SystemError, "bad opcode");
    return -1;
}

/* ------------------------------------------------------------------ decoding */

typedef struct {
    const unsigned char *data;
    Py_ssize_t len;
    Py_ssize_t pos;
} Reader;

static int truncated(void) {
    PyErr_SetString(PyExc_ValueError, "truncated Avro body");
    return -1;
}

static inline int read_long(Reader *in, int64_t *out) {
    uint64_t z = 0;
    int shift = 0;
    while (1) {
        if (in->pos >= in->len) {
            return truncated();
        }
        unsigned char c = in->data[in->pos++];
        if (shift == 63 && c > 1) {
            PyErr_SetString(PyExc_ValueError, "varint overflows 64 bits");
            return -1;
        }
        z |= (uint64_t)(c & 0x7F) << shift;
        if (c < 0x80) {
            break;
        }
        shift += 7;
        if (shift > 63) {
            PyErr_SetString(PyExc_ValueError, "varint longer than 10 bytes");
            return -1;
        }
    }
    *out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return 0;
}

static PyObject *decode_node(Node *node, Reader *in);

static PyObject *decode_string(Reader *in) {
    int64_t size;
    if (read_long(in, &size) < 0) {
        return NULL;
    }
    if (size < 0 || size > in->len - in->pos) {
        truncated();
        return NULL;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)in->data + in->pos, (Py_ssize_t)size, NULL);
    in->pos += (Py_ssize_t)size;
    return text;
}

/* An Avro double (size 8) or float (size 4), little-endian. */
static PyObject *decode_real(Reader *in, Py_ssize_t size) {
    if (in->len - in->pos < size) {
        truncated();
        return NULL;
    }
    const char *at = (const char *)in->data + in->pos;
    double x = size == 8 ? PyFloat_Unpack8(at, 1) : PyFloat_Unpack4(at, 1);
    in->pos += size;
    if (x == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    return PyFloat_FromDouble(x);
}

static PyObject *decode_record(Node *node, Reader *in) {
    PyObject *stack[16];
    PyObject **values = node->nfields <= 16 ? stack : PyMem_Calloc(node->nfields, sizeof(PyObject *));
    if (values == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    Py_ssize_t done = 0;
    for (; done < node->nfields; done++) {
        values[done] = decode_node(node->fields[done], in);
        if (values[done] == NULL) {
            goto out;
        }
    }
    PyTypeObject *cls = (PyTypeObject *)node->cls;
    if (node->direct) {
        /* What a dataclass __init__ does, without running Python: a frozen one sets its
         * fields through object.__setattr__ too. */
        result = cls->tp_alloc(cls, 0);
        if (result == NULL) {
            goto out;
        }
        for (Py_ssize_t i = 0; i < node->nfields; i++) {
            if (node->offsets[i] >= 0) { /* the new object's slots are all empty */
                *(PyObject **)((char *)result + node->offsets[i]) = Py_NewRef(values[i]);
            } else if (PyObject_GenericSetAttr(result, node->names[i], values[i]) < 0) {
                Py_CLEAR(result);
                goto out;
            }
        }
    } else {
        PyObject *args[16];
        PyObject **ordered = node->nfields <= 16 ? args : PyMem_Calloc(node->nfields, sizeof(PyObject *));
        if (ordered == NULL) {
            PyErr_NoMemory();
            goto out;
        }
        for (Py_ssize_t i = 0; i < node->nfields; i++) {
            ordered[i] = values[node->ctor_order[i]];
        }
        result = PyObject_Vectorcall((PyObject *)cls, ordered, node->nfields, NULL);
        if (ordered != args) {
            PyMem_Free(ordered);
        }
    }
out:
    for (Py_ssize_t i = 0; i < done; i++) {
        Py_DECREF(values[i]);
    }
    if (values != stack) {
        PyMem_Free(values);
    }
    return result;
}

static PyObject *decode_blocks(Node *node, Reader *in, int is_map) {
    PyObject *acc = is_map ? PyDict_New() : PyList_New(0);
    if (acc == NULL) {
        return NULL;
    }
    while (1) {
        int64_t count;
        if (read_long(in, &count) < 0) {
            goto fail;
        }
        if (count == 0) {
            break;
        }
        if (count < 0) { /* a block with its byte size, which we do not need */
            int64_t size;
            count = -count;
            if (read_long(in, &size) < 0) {
                goto fail;
            }
        }
        for (int64_t i = 0; i < count; i++) {
            if (is_map) {
                PyObject *key = decode_string(in);
                if (key == NULL) {
                    goto fail;
                }
                PyObject *item = decode_node(node->inner, in);
                if (item == NULL) {
                    Py_DECREF(key);
                    goto fail;
                }
                int failed = PyDict_SetItem(acc, key, item);
                Py_DECREF(key);
                Py_DECREF(item);
                if (failed < 0) {
                    goto fail;
                }
            } else {
                PyObject *item = decode_node(node->inner, in);
                if (item == NULL) {
                    goto fail;
                }
                int failed = PyList_Append(acc, item);
                Py_DECREF(item);
                if (failed < 0) {
                    goto fail;
                }
            }
        }
    }
    if (is_map) {
        return acc;
    }
    PyObject *items = PyList_AsTuple(acc);
    Py_DECREF(acc);
    return items;
fail:
    Py_DECREF(acc);
    return NULL;
}

static PyObject *decode_node(Node *node, Reader *in) {
    switch (node->op) {
    case OP_LONG: {
        int64_t n;
        if (read_long(in, &n) < 0) {
            return NULL;
        }
        return PyLong_FromLongLong(n);
    }
    case OP_STRING:
        return decode_string(in);
    case OP_BOOLEAN:
        if (in->pos >= in->len) {
            truncated();
            return NULL;
        }
        return PyBool_FromLong(in->data[in->pos++] == 1);
    case OP_DOUBLE:
        return decode_real(in, 8);
    case OP_FLOAT:
        return decode_real(in, 4);
    case OP_OPTIONAL: {
        int64_t index;
        if (read_long(in, &index) < 0) {
            return NULL;
        }
        if (index == node->null_index) {
            Py_RETURN_NONE;
        }
        if (index == 1 - node->null_index) {
            return decode_node(node->inner, in);
        }
        PyErr_SetString(PyExc_ValueError, "bad union index");
        return NULL;
    }
    case OP_ENUM: {
        int64_t index;
        if (read_long(in, &index) < 0) {
            return NULL;
        }
        if (index < 0 || index >= PyTuple_GET_SIZE(node->enum_members)) {
            PyErr_SetString(PyExc_ValueError, "enum index out of range");
            return NULL;
        }
        PyObject *member = PyTuple_GET_ITEM(node->enum_members, (Py_ssize_t)index);
        if (member == Py_None) {
            PyErr_Format(PyExc_ValueError, "enum symbol unknown to %R", node->cls);
            return NULL;
        }
        return Py_NewRef(member);
    }
    case OP_RECORD:
        return decode_record(node, in);
    case OP_ARRAY:
        return decode_blocks(node, in, 0);
    case OP_MAP:
        return decode_blocks(node, in, 1);
    }
    PyErr_SetString(PyExc_SystemError, "bad opcode");
    return NULL;
}

/* ------------------------------------------------------------------ Codec */

typedef struct {
    PyObject_HEAD
    PyObject *header; /* bytes: magic + fingerprint */
    Node *meta;       /* OP_RECORD of the envelope */
    Node *body;       /* OP_RECORD of the message's dataclass */
} Codec;

static void codec_dealloc(Codec *self) {
    Py_XDECREF(self->header);
    node_free(self->meta);
    node_free(self->body);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int codec_init(Codec *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"header", "meta", "body", NULL};
    PyObject *header, *meta, *body;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "SO!O!", keywords, &header, &PyTuple_Type, &meta, &PyTuple_Type,
                                     &body)) {
        return -1;
    }
    Node *meta_node = node_build(meta);
    if (meta_node == NULL) {
        return -1;
    }
    Node *body_node = node_build(body);
    if (body_node == NULL) {
        node_free(meta_node);
        return -1;
    }
    if (meta_node->op != OP_RECORD || body_node->op != OP_RECORD) {
        node_free(meta_node);
        node_free(body_node);
        PyErr_SetString(PyExc_ValueError, "meta and body must be record programs");
        return -1;
    }
    Py_XSETREF(self->header, Py_NewRef(header));
    node_free(self->meta);
    node_free(self->body);
    self->meta = meta_node;
    self->body = body_node;
    return 0;
}

static int codec_ready(Codec *self) {
    if (self->meta == NULL || self->body == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Codec not initialised");
        return -1;
    }
    return 0;
}

/* The envelope, then the body: a new (meta, value) tuple, or NULL. */
static PyObject *decode_message(Codec *codec, Reader *in) {
    PyObject *meta = decode_record(codec->meta, in);
    if (meta == NULL) {
        return NULL;
    }
    PyObject *value = decode_record(codec->body, in);
    PyObject *pair = value == NULL ? NULL : PyTuple_Pack(2, meta, value);
    Py_DECREF(meta);
    Py_XDECREF(value);
    return pair;
}

static PyObject *finish(Buf *buf, int failed) {
    PyObject *result = failed ? NULL : PyBytes_FromStringAndSize(buf->data, buf->len);
    buf_release(buf);
    return result;
}

PyDoc_STRVAR(codec_encode_doc, "encode(value, meta) -> bytes: header, envelope, then the value's fields.");

static PyObject *codec_encode(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "encode(value, meta)");
        return NULL;
    }
    if (codec_ready(self) < 0) {
        return NULL;
    }
    Buf buf;
    buf_init(&buf);
    int failed = buf_put(&buf, PyBytes_AS_STRING(self->header), PyBytes_GET_SIZE(self->header)) < 0 ||
                 encode_record(self->meta, args[1], &buf) < 0 || encode_record(self->body, args[0], &buf) < 0;
    return finish(&buf, failed);
}

PyDoc_STRVAR(codec_encode_fields_doc,
             "encode_fields(value, *envelope) -> bytes: as encode(), with the envelope's fields\n"
             "given in schema order instead of as a Meta (no Meta object to build per event).");

static PyObject *codec_encode_fields(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    if (codec_ready(self) < 0) {
        return NULL;
    }
    if (nargs != 1 + self->meta->nfields) {
        PyErr_Format(PyExc_TypeError, "encode_fields(value, ...) takes the value and %zd envelope fields",
                     self->meta->nfields);
        return NULL;
    }
    Buf buf;
    buf_init(&buf);
    int failed = buf_put(&buf, PyBytes_AS_STRING(self->header), PyBytes_GET_SIZE(self->header)) < 0;
    for (Py_ssize_t i = 0; !failed && i < self->meta->nfields; i++) {
        failed = encode_node(self->meta->fields[i], args[1 + i], &buf) < 0;
    }
    failed = failed || encode_record(self->body, args[0], &buf) < 0;
    return finish(&buf, failed);
}

PyDoc_STRVAR(codec_decode_doc,
             "decode(data, offset) -> (meta, value, end): reads the body that starts at offset.\n"
             "Raises ValueError on a truncated or corrupt body; trailing bytes are the caller's to check.");

static PyObject *codec_decode(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode(data, offset)");
        return NULL;
    }
    if (codec_ready(self) < 0) {
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    if (offset < 0 || offset > view.len) {
        truncated();
        goto out;
    }
    Reader in = {(const unsigned char *)view.buf, view.len, offset};
    PyObject *pair = decode_message(self, &in);
    PyObject *end = pair == NULL ? NULL : PyLong_FromSsize_t(in.pos);
    if (end != NULL) {
        result = PyTuple_Pack(3, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1), end);
        Py_DECREF(end);
    }
    Py_XDECREF(pair);
out:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef codec_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))codec_encode, METH_FASTCALL, codec_encode_doc},
    {"encode_fields", (PyCFunction)(void (*)(void))codec_encode_fields, METH_FASTCALL, codec_encode_fields_doc},
    {"decode", (PyCFunction)(void (*)(void))codec_decode, METH_FASTCALL, codec_decode_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CodecType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "streams._avro_native.Codec",
    .tp_basicsize = sizeof(Codec),
    .tp_dealloc = (destructor)codec_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Codec(header, meta, body): one message schema's encoder and decoder."),
    .tp_methods = codec_methods,
    .tp_init = (initproc)codec_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ Codecs */

/* Every current message schema's Codec by writer fingerprint: one call from the bytes of
 * a record to (meta, value), for the consumer hot path. */
typedef struct {
    uint64_t fingerprint;
    Codec *codec;
} Entry;

typedef struct {
    PyObject_HEAD
    Py_ssize_t count;
    Entry *entries; /* sorted by fingerprint */
} Codecs;

static void codecs_dealloc(Codecs *self) {
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Py_XDECREF(self->entries[i].codec);
    }
    PyMem_Free(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static uint64_t read_fingerprint(const unsigned char *bytes) {
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--) {
        value = (value << 8) | bytes[i];
    }
    return value;
}

static int entry_order(const void *a, const void *b) {
    uint64_t x = ((const Entry *)a)->fingerprint, y = ((const Entry *)b)->fingerprint;
    return x < y ? -1 : x > y;
}

static int codecs_init(Codecs *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"by_fingerprint", NULL};
    PyObject *mapping;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!", keywords, &PyDict_Type, &mapping)) {
        return -1;
    }
    if (self->entries != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Codecs already initialised");
        return -1;
    }
    Py_ssize_t n = PyDict_GET_SIZE(mapping);
    Entry *entries = PyMem_Calloc(n ? n : 1, sizeof(Entry));
    if (entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(mapping, &pos, &key, &value)) {
        if (!PyBytes_Check(key) || PyBytes_GET_SIZE(key) != 8 || !PyObject_TypeCheck(value, &CodecType)) {
            PyErr_SetString(PyExc_TypeError, "Codecs needs {8-byte fingerprint: Codec}");
            for (Py_ssize_t j = 0; j < i; j++) {
                Py_DECREF(entries[j].codec);
            }
            PyMem_Free(entries);
            return -1;
        }
        entries[i].fingerprint = read_fingerprint((const unsigned char *)PyBytes_AS_STRING(key));
        entries[i].codec = (Codec *)Py_NewRef(value);
        i++;
    }
    qsort(entries, n, sizeof(Entry), entry_order);
    self->entries = entries;
    self->count = n;
    return 0;
}

PyDoc_STRVAR(codecs_decode_doc,
             "decode(data) -> (meta, value), or None when no current schema has data's fingerprint.\n"
             "Raises ValueError on bad magic, a short header, a corrupt body or trailing bytes.");

static PyObject *codecs_decode(Codecs *self, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    const unsigned char *bytes = view.buf;
    if (view.len < 10 || bytes[0] != 0xC3 || bytes[1] != 0x01) {
        PyErr_SetString(PyExc_ValueError, "not an Avro single-object record (bad magic or too short)");
        goto out;
    }
    uint64_t fingerprint = read_fingerprint(bytes + 2);
    Py_ssize_t low = 0, high = self->count;
    while (low < high) {
        Py_ssize_t mid = (low + high) / 2;
        if (self->entries[mid].fingerprint < fingerprint) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    if (low == self->count || self->entries[low].fingerprint != fingerprint) {
        result = Py_NewRef(Py_None);
        goto out;
    }
    Codec *codec = self->entries[low].codec;
    Reader in = {bytes, view.len, 10};
    result = decode_message(codec, &in);
    if (result != NULL && in.pos != view.len) {
        PyErr_Format(PyExc_ValueError, "%zd trailing byte(s)", view.len - in.pos);
        Py_CLEAR(result);
    }
out:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef codecs_methods[] = {
    {"decode", (PyCFunction)codecs_decode, METH_O, codecs_decode_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CodecsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "streams._avro_native.Codecs",
    .tp_basicsize = sizeof(Codecs),
    .tp_dealloc = (destructor)codecs_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Codecs({fingerprint: Codec}): decode any current message in one call."),
    .tp_methods = codecs_methods,
    .tp_init = (initproc)codecs_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "streams._avro_native",
    .m_doc = "Native Avro binary codecs driven by programs from streams._avro_codegen.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__avro_native(void) {
    if (PyType_Ready(&CodecType) < 0 || PyType_Ready(&CodecsType) < 0) {
        return NULL;
    }
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(mod, "Codec", (PyObject *)&CodecType) < 0 ||
        PyModule_AddObjectRef(mod, "Codecs", (PyObject *)&CodecsType) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
