// Instantiates a template file twice, for float (SUFFIX f32) and double (SUFFIX f64):
//   #define CPU_TEMPLATE "cpu_conv_impl.h"
//   #include "cpu_template.h"
// The template defines its functions with CAT(name_, SUFFIX) and uses T for the element type.
#define T      float
#define SUFFIX f32
#include CPU_TEMPLATE
#undef T
#undef SUFFIX

#define T      double
#define SUFFIX f64
#include CPU_TEMPLATE
#undef T
#undef SUFFIX
#undef CPU_TEMPLATE
