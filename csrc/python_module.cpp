// Lets `import fastgan._C` load the operator library; the ops themselves are
// reached through torch.ops.fastgan, never through this module.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "fastgan operator library", -1, nullptr};
  return PyModule_Create(&module_def);
}
}
