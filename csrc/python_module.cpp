// Lets `import fastgan._C` load the operator library; the ops themselves are
// reached through torch.ops.fastgan, never through this module.
#include <Python.h>

#ifdef FASTGAN_SOURCES_DIGEST
#define FASTGAN_STRINGIZE_(x) #x
#define FASTGAN_STRINGIZE(x) FASTGAN_STRINGIZE_(x)
// The digest of the sources this library was built from (setup.py), which the loader reads
// from the file before loading it: a library built from other sources is not loaded.
extern "C" __attribute__((used)) const char fastgan_sources_digest[] =
    "fastgan-sources-digest:" FASTGAN_STRINGIZE(FASTGAN_SOURCES_DIGEST);
#endif

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "fastgan operator library", -1, nullptr};
  return PyModule_Create(&module_def);
}
}
