"""Auto-discovery: devices that register or report in, services found by a network scan,
and Prometheus file_sd/http_sd inventories become discovered targets that an admin approves
(or that are approved automatically), each with default health checks."""
