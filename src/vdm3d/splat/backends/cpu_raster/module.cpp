// The Python module of the ``cpp`` backend (see cpp.py for why and how it is built): pybind11 bindings of
// the kernels declared in kernels.h. The bindings are a translation unit of their own because pybind11's
// header alone is 5 s of the build at -O3, which now runs beside the kernels' units.

#include <pybind11/pybind11.h>

#include "kernels.h"

using namespace vdm3d_raster;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "vdm3d's float32 tiled CPU rasterizer (binning, forward, backward) and EWA projection; see cpp.py.";
    auto bytes = [](const auto& v) {  // a copy, for tests: numpy.frombuffer reads it
        return pybind11::bytes(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0]));
    };
    pybind11::class_<Bins, std::shared_ptr<Bins>>(m, "Bins")
        .def_property_readonly("offsets", [bytes](const Bins& b) { return bytes(b.offsets); })
        .def_property_readonly("gauss", [bytes](const Bins& b) { return bytes(b.gauss); })
        .def_property_readonly("boxes", [bytes](const Bins& b) { return bytes(b.boxes); });
    m.def("bin", &bin, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("forward", &forward, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("backward", &backward, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("project_forward", &project_forward, pybind11::call_guard<pybind11::gil_scoped_release>());
    m.def("project_backward", &project_backward, pybind11::call_guard<pybind11::gil_scoped_release>());
}
