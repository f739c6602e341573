-- The alert engine's own store: a database other than the service's, which the engine
-- watches (a service database that is down must not take the alerts about it down too).
CREATE DATABASE dynoscope_alerts;
