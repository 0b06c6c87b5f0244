"""The student-facing assignment: notebook source, public modules, data and the nbgrader release."""
