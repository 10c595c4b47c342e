"""The daily data timetable: sync exports (17:00), clean and check (02:00), journeys (08:00)."""
