-- One database per service (no service reads another's).
CREATE DATABASE loket_catalogue;
CREATE DATABASE loket_booking;
CREATE DATABASE loket_calendar;
CREATE DATABASE loket_notifications;
