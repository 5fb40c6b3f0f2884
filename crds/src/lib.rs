//! vfnet's custom resources (`VfProfile`, `VfPool`, group `vfnet.dev`). Skeleton: the CNI and
//! device plugin issues add the types.
