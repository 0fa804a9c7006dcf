// Ctrl-C and SIGTERM as a request to stop: the handlers only set a flag, every
// loop polls it and winds down the normal way (drain, exit behaviour, summary).
#pragma once

namespace fleet_sim {

void install_stop_handlers();
bool stop_requested();

}  // namespace fleet_sim
