"""Device and headquarters simulators a field technician can run; they speak the real wire protocols."""
