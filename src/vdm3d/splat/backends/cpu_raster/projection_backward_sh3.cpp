// Instances of project_backward_cam (projection.h), a unit of their own so that a first build compiles them
// beside the others.

#include "projection.h"

namespace vdm3d_raster {

template VDM3D_PROJECT_BACKWARD_CAM(3, true);

}  // namespace vdm3d_raster
