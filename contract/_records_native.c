/* dataclasses.replace for plain frozen slots dataclasses, in C (see contract/records.py).
 *
 * Such a class's instance is nothing but its slots, and its generated __init__ only
 * stores the arguments in them (through object.__setattr__, field by field: that is
 * what makes dataclasses.replace slow). So a copy of the slots with the changed ones
 * swapped in is the object __init__ would have built. Which classes qualify is decided
 * once per class, in Python (the `layout` callable); the others go to `fallback`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "slots.h"

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *layout;   /* cls -> tuple of field names | None */
    PyObject *fallback; /* dataclasses.replace */
    PyObject *cache;    /* {cls: (names, offsets as bytes) | None} */
} Replacer;

static int replacer_traverse(Replacer *self, visitproc visit, void *arg) {
    Py_VISIT(self->layout);
    Py_VISIT(self->fallback);
    Py_VISIT(self->cache);
    return 0;
}

static int replacer_clear(Replacer *self) {
    Py_CLEAR(self->layout);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->cache);
    return 0;
}

static void replacer_dealloc(Replacer *self) {
    PyObject_GC_UnTrack(self);
    replacer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* (names, offsets) for cls, or None when its instances must go through the fallback. */
static PyObject *entry_for(Replacer *self, PyTypeObject *cls) {
    PyObject *entry = PyDict_GetItemWithError(self->cache, (PyObject *)cls);
    if (entry != NULL || PyErr_Occurred()) {
        return entry; /* borrowed */
    }
    PyObject *names = PyObject_CallOneArg(self->layout, (PyObject *)cls);
    if (names == NULL) {
        return NULL;
    }
    PyObject *fresh = Py_NewRef(Py_None);
    if (PyTuple_Check(names)) {
        Py_ssize_t n = PyTuple_GET_SIZE(names);
        PyObject *offsets = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(Py_ssize_t));
        if (offsets == NULL) {
            Py_DECREF(names);
            Py_DECREF(fresh);
            return NULL;
        }
        Py_ssize_t *at = (Py_ssize_t *)PyBytes_AS_STRING(offsets);
        int plain = 1;
        for (Py_ssize_t i = 0; i < n && plain; i++) {
            PyObject *name = PyTuple_GET_ITEM(names, i);
            at[i] = PyUnicode_Check(name) ? slot_offset(cls, name) : -1;
            plain = at[i] >= 0;
        }
        if (plain) {
            Py_SETREF(fresh, PyTuple_Pack(2, names, offsets));
        }
        Py_DECREF(offsets);
    }
    Py_DECREF(names);
    if (fresh == NULL || PyDict_SetItem(self->cache, (PyObject *)cls, fresh) < 0) {
        Py_XDECREF(fresh);
        return NULL;
    }
    Py_DECREF(fresh); /* the cache holds it */
    return fresh;
}

static Py_ssize_t field_index(PyObject *names, PyObject *name) {
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) { /* identifiers are interned: pointers match */
        if (PyTuple_GET_ITEM(names, i) == name) {
            return i;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int equal = PyUnicode_Compare(PyTuple_GET_ITEM(names, i), name) == 0;
        if (equal) {
            return i;
        }
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    return -1;
}

static PyObject *replacer_call(Replacer *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "replace(obj, /, **changes) takes one positional argument");
        return NULL;
    }
    PyObject *obj = args[0];
    PyTypeObject *cls = Py_TYPE(obj);
    PyObject *entry = entry_for(self, cls);
    if (entry == NULL) {
        return NULL;
    }
    if (entry == Py_None) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    PyObject *names = PyTuple_GET_ITEM(entry, 0);
    const Py_ssize_t *offsets = (const Py_ssize_t *)PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 1));
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (*(PyObject **)((char *)obj + offsets[i]) == NULL) { /* half-built: let the fallback explain */
            return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
        }
    }
    PyObject *copy = cls->tp_alloc(cls, 0);
    if (copy == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        *(PyObject **)((char *)copy + offsets[i]) = Py_NewRef(*(PyObject **)((char *)obj + offsets[i]));
    }
    Py_ssize_t changes = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < changes; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t i = field_index(names, name);
        if (i < 0) {
            Py_DECREF(copy);
            PyErr_Format(PyExc_TypeError, "%s.__init__() got an unexpected keyword argument '%U'", cls->tp_name,
                         name);
            return NULL;
        }
        PyObject **slot = (PyObject **)((char *)copy + offsets[i]);
        Py_SETREF(*slot, Py_NewRef(args[nargs + k]));
    }
    return copy;
}

static int replacer_init(Replacer *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"layout", "fallback", NULL};
    PyObject *layout, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO", keywords, &layout, &fallback)) {
        return -1;
    }
    PyObject *cache = PyDict_New();
    if (cache == NULL) {
        return -1;
    }
    Py_XSETREF(self->layout, Py_NewRef(layout));
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_XSETREF(self->cache, cache);
    self->vectorcall = (vectorcallfunc)replacer_call;
    return 0;
}

static PyObject *replacer_tp_call(Replacer *self, PyObject *args, PyObject *kwargs) {
    if (self->cache == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Replacer not initialised");
        return NULL;
    }
    return PyVectorcall_Call((PyObject *)self, args, kwargs);
}

static PyTypeObject ReplacerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "taskplane.contract._records_native.Replacer",
    .tp_basicsize = sizeof(Replacer),
    .tp_dealloc = (destructor)replacer_dealloc,
    .tp_vectorcall_offset = offsetof(Replacer, vectorcall),
    .tp_call = (ternaryfunc)replacer_tp_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = PyDoc_STR("Replacer(layout, fallback): replace(obj, /, **changes) for plain slots dataclasses."),
    .tp_traverse = (traverseproc)replacer_traverse,
    .tp_clear = (inquiry)replacer_clear,
    .tp_init = (initproc)replacer_init,
    .tp_new = PyType_GenericNew, /* zeroed: vectorcall stays NULL until __init__ */
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "taskplane.contract._records_native",
    .m_doc = "dataclasses.replace for plain frozen slots dataclasses (see contract/records.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__records_native(void) {
    if (PyType_Ready(&ReplacerType) < 0) {
        return NULL;
    }
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(mod, "Replacer", (PyObject *)&ReplacerType) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
