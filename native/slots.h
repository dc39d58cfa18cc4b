/* Shared by the C extensions: where a __slots__ field of a class lives in its instances. */
#ifndef TASKPLANE_SLOTS_H
#define TASKPLANE_SLOTS_H

#include <Python.h>
#include <structmember.h>

/* Offset of cls's own writable object slot `name` (a member descriptor in cls's own
 * dict, not a base's), or -1 when the attribute is anything else. */
static inline Py_ssize_t slot_offset(PyTypeObject *cls, PyObject *name) {
    PyObject *descr = PyDict_GetItemWithError(cls->tp_dict, name);
    if (descr == NULL || Py_TYPE(descr) != &PyMemberDescr_Type) {
        PyErr_Clear();
        return -1;
    }
    PyMemberDescrObject *member = (PyMemberDescrObject *)descr;
    if (member->d_common.d_type != cls || member->d_member->type != T_OBJECT_EX ||
        (member->d_member->flags & READONLY)) {
        return -1;
    }
    return member->d_member->offset;
}

#endif
