"""The synthetic farmland scene renderer's pieces.

* :mod:`.layout`: the scene as vector geometry (parcels, roads, houses, trees, plots), no pixels;
* :mod:`.materials`: one small class per surface, drawing into a window;
* :mod:`.plants`: plants as sprites on planting lattices (crops, poppy, flowers);
* :mod:`.camera`: light, exposure, white balance, haze, blur, noise, JPEG;
* :mod:`.render`: one window of a scene, from layout to 8-bit pixels;
* :mod:`.noise`, :mod:`.rasterize`, :mod:`.context`: the seamless-by-construction building blocks.
"""
