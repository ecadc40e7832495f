// The public face of swift-shm. `import Shm` brings in every layer a user
// programs against; the layers themselves stay separate targets so that
// dependencies point one way (see DESIGN.md).
@_exported import ShmSystem
@_exported import ShmPrimitives
