"""From a source through filters to a sink: the filter interface, registry and graph parser
(:mod:`.filter`), the threaded engine (:mod:`.engine`) and the one session builder the API,
the command line and batch share (:mod:`.session`)."""
